## Export the lme4 / MASS example data sets shipped with pyglmm.
##
## Run from the repository root:
##     Rscript tests/reference/export_datasets.R
##
## For each data set it writes
##     src/pyglmm/datasets/data/<name>.csv          (no row names)
##     src/pyglmm/datasets/data/<name>.levels.json  (factor column -> levels, in R's order)
## Doubles are written with the shortest of %.15g / %.17g that reads back
## bit-identically, so R and Python see exactly the same numbers.
## Ordered factors are listed under the reserved key "_ordered".

suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
  library(jsonlite)
})

outdir <- file.path("src", "pyglmm", "datasets", "data")
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

fmt_double <- function(x) {
  s15 <- sprintf("%.15g", x)
  s17 <- sprintf("%.17g", x)
  out <- ifelse(as.numeric(s15) == x, s15, s17)
  out[is.na(x)] <- NA
  out
}

export <- function(df, name) {
  df <- as.data.frame(df)
  levs <- list()
  ordered_cols <- character(0)
  out <- df
  for (col in names(df)) {
    x <- df[[col]]
    if (is.factor(x)) {
      levs[[col]] <- levels(x)
      if (is.ordered(x)) ordered_cols <- c(ordered_cols, col)
      out[[col]] <- as.character(x)
    } else if (is.double(x)) {
      out[[col]] <- fmt_double(x)
    }
  }
  if (length(ordered_cols)) levs[["_ordered"]] <- I(ordered_cols)
  write.csv(out, file.path(outdir, paste0(name, ".csv")), row.names = FALSE,
            quote = TRUE, na = "NA", fileEncoding = "UTF-8", eol = "\n")
  # numbers were pre-formatted as strings: strip the quotes write.csv put on them
  lines <- readLines(file.path(outdir, paste0(name, ".csv")))
  hdr <- lines[1]
  body <- read.csv(file.path(outdir, paste0(name, ".csv")), colClasses = "character")
  for (col in names(df)) {
    if (!is.factor(df[[col]]) && !is.character(df[[col]])) next
    body[[col]] <- paste0('"', body[[col]], '"')
  }
  txt <- do.call(paste, c(unname(as.list(body)), sep = ","))
  writeLines(c(hdr, txt), file.path(outdir, paste0(name, ".csv")))
  js <- if (length(levs)) toJSON(levs, auto_unbox = FALSE, pretty = TRUE) else "{}"
  writeLines(js, file.path(outdir, paste0(name, ".levels.json")))
  # round-trip check
  back <- read.csv(file.path(outdir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (col in names(df)) {
    x <- df[[col]]
    y <- back[[col]]
    if (is.factor(x)) stopifnot(identical(as.character(x), as.character(y)))
    else stopifnot(all(as.numeric(x) == as.numeric(y)))
  }
  cat(sprintf("%-12s %5d rows  %s\n", name, nrow(df), paste(names(df), collapse = ",")))
}

export(lme4::cbpp, "cbpp")
export(lme4::sleepstudy, "sleepstudy")
export(lme4::grouseticks, "grouseticks")
export(lme4::VerbAgg, "verbagg")
export(MASS::epil, "epil")
export(lme4::Pastes, "pastes")
export(lme4::Penicillin, "penicillin")
export(lme4::Dyestuff, "dyestuff")
cat(sprintf("R %s, lme4 %s, MASS %s\n", getRversion(), packageVersion("lme4"),
            packageVersion("MASS")))
