# R's read.csv on tricky files -> tests/reference/fixtures/read_csv_rules.json, the reference of
# tests/test_csv_reading.py for pyglmm.readers.read_csv (the CLI's CSV reader).
#
#   Rscript tests/reference/read_csv_rules.R        (R 4.2.2, jsonlite 1.8.4; run from the repo root)
#
# Each case writes `text` to a file and reads it with read.csv(file, sep, dec, na.strings); the
# fixture stores the column names, R's class of each column and its values (NA -> null; NaN, Inf,
# -Inf as strings), or R's error message. What this shows (R 4.2.2):
#   * na.strings = "NA" is the only missing string: "None", "null", "N/A", "nan" (in a character
#     column), "#N/A" stay strings; a quoted "NA" is NA too; " NA" and "NA " are strings.
#   * an empty (or all-blank) field is NA in a logical/integer/numeric column, "" in a character one.
#   * numbers: leading/trailing blanks allowed, "NaN", "nan", "Inf", "-Inf", "inf", "Infinity" are
#     numbers (NaN / +-Inf), "NAN" is not (it starts with "NA"), "007" -> 7L, "0x10" -> 16, "1e" -> 1.
#   * logicals: only TRUE, FALSE, T, F ("true" / "True" make the column character).
#   * names go through make.names(unique = TRUE); a header one field short makes column 1 row names.
# Deliberate differences of pyglmm (not in this fixture): a UTF-8 BOM is dropped (R keeps it in the
# first name), a header-only file is an error (R: 0 rows), sep = ";" without dec tries "," as the
# decimal mark per column (R: strict "."), a row with too many fields is an error (R wraps it).
suppressPackageStartupMessages(library(jsonlite))

cases <- list(
  list(id = "na_only_NA", text = 'a,b,c\nx,1,TRUE\n,,\nNA,NA,NA\n"NA","NA","NA"\n NA, NA, NA\nNone,3,FALSE\n'),
  list(id = "level_None", text = 'y,g\n1,None\n2,NA\n3,null\n4,N/A\n5,nan\n6,\n7,#N/A\n8,NaN\n'),
  list(id = "numeric_specials", text = 'n\n1\nNaN\nInf\n-Inf\nnan\ninf\nInfinity\n-nan\n'),
  list(id = "numeric_blank", text = 'x,y\n"",2\n3,\n , 4\n'),
  list(id = "padded_NA_is_string", text = 'x,y\n1,2\n NA,3\nNA ,4\n'),
  list(id = "NAN_is_string", text = 'n\n1\nNAN\n'),
  list(id = "ids_007", text = 'id,y\n007,1\n010,2\n'),
  list(id = "logicals", text = 'b,c,d,e\nTRUE,T,true,TRUE\nFALSE,F,false,True\nNA,,True,FALSE\n'),
  list(id = "all_missing", text = 'e,f,g\n,1,NA\nNA,2,\n'),
  list(id = "number_forms", text = 'x\n1e3\n1.5e-2\n.5\n5.\n+3\n 4 \n0x10\n1e\n-0x1A\n'),
  list(id = "not_numbers", text = 'a,b,c,d\n1,1,1,1\n1d3,1_000,1 2,.\n'),
  list(id = "names", text = 'my col,x,x,,1a,_b,if,NA,x.1\n1,2,3,4,5,6,7,8,9\n'),
  list(id = "row_names", text = 'y,z\nr1,1,2\nr2,3,4\n'),
  list(id = "short_rows", text = 'x,y\n1,a\n2\n3,\n'),
  list(id = "na_strings_None", text = 'a,b\nNA,None\n1,2\n', na = c("None")),
  list(id = "na_strings_blank", text = 'a,b\n,1\nx,2\n', na = c("NA", "")),
  list(id = "semicolon_dec_comma", text = 'x;y;z\n1,5;2;a\n2,25;3;b\n', sep = ";", dec = ","),
  list(id = "tab", text = 'x\ty\n1\ta b\n2\tc\n', sep = "\t"),
  list(id = "quotes", text = 'x,y,z\n"a,b",1,"1"\n"c""d",2,"2"\n'),
  list(id = "crlf", text = 'x,y\r\n1,a\r\n2,b\r\n'),
  list(id = "blank_lines", text = 'x,y\n1,2\n\n3,4\n\n'),
  list(id = "big_integers", text = 'y\n2147483647\n2147483648\n12345678901234567890\n'),
  list(id = "whitespace_kept", text = 'a,n\n x,1\nx ,2\nx,3\n'),
  list(id = "embedded_newline", text = 'x,y\n"a\nb",1\nc,2\n'),
  list(id = "err_duplicate_row_names", text = 'y,z\nr1,1,2\nr1,3,4\n'),
  list(id = "err_more_columns_than_names", text = 'a\n1,2,3\n'),
  list(id = "err_empty", text = '')
)

enc <- function(v) {
  if (is.na(v) && !is.nan(v)) return(NULL)
  if (is.numeric(v)) {
    if (is.nan(v)) return("NaN")
    if (is.infinite(v)) return(if (v > 0) "Inf" else "-Inf")
  }
  v
}

out <- lapply(cases, function(cs) {
  f <- tempfile(fileext = ".csv")
  writeBin(charToRaw(cs$text), f)
  args <- list(f)
  if (!is.null(cs$sep)) args$sep <- cs$sep
  if (!is.null(cs$dec)) args$dec <- cs$dec
  if (!is.null(cs$na)) args$na.strings <- cs$na
  res <- tryCatch(do.call(read.csv, args), error = function(e) e)
  rec <- list(id = cs$id, text = cs$text, sep = cs$sep, dec = cs$dec, na_strings = cs$na)
  if (inherits(res, "error")) {
    rec$error <- conditionMessage(res)
  } else {
    rec$names <- names(res)
    rec$classes <- unname(vapply(res, function(x) class(x)[1], ""))
    rec$columns <- unname(lapply(res, function(x) lapply(x, enc)))
  }
  rec
})

fixture <- list(versions = list(R = R.version.string, jsonlite = as.character(packageVersion("jsonlite"))),
                cases = out)
writeLines(toJSON(fixture, auto_unbox = TRUE, null = "null", digits = NA, pretty = TRUE),
           "tests/reference/fixtures/read_csv_rules.json")
