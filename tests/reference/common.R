## Shared by the fixture scripts: read a data set exactly as pyglmm ships it
## (src/pyglmm/datasets/data/<name>.csv with the factor levels of <name>.levels.json).
## Source from the repository root: source(file.path("tests", "reference", "common.R"))
suppressPackageStartupMessages(library(jsonlite))
datadir <- file.path("src", "pyglmm", "datasets", "data")
load_data <- function(name) {
  levs <- fromJSON(file.path(datadir, paste0(name, ".levels.json")), simplifyVector = TRUE)
  ordered_cols <- if (is.null(levs[["_ordered"]])) character(0) else levs[["_ordered"]]
  fcols <- setdiff(names(levs), "_ordered")
  cc <- setNames(rep("character", length(fcols)), fcols)
  d <- read.csv(file.path(datadir, paste0(name, ".csv")), colClasses = cc,
                stringsAsFactors = FALSE)
  for (col in fcols) {
    stopifnot(all(d[[col]] %in% levs[[col]]))
    d[[col]] <- factor(d[[col]], levels = levs[[col]], ordered = col %in% ordered_cols)
  }
  d
}

## JSON writing with full precision (numbers rendered with %.17g and spliced in verbatim)
num_json <- function(x) {
  s <- sprintf("%.17g", x)
  s[is.na(x) | !is.finite(x)] <- "null"
  s
}
prep <- function(x) {
  if (is.null(x)) return(NULL)
  if (is.list(x)) return(lapply(x, prep))
  if (is.numeric(x) && !is.integer(x)) {
    nm <- names(x)
    x <- as.numeric(x)
    if (!is.null(nm)) {              # named vector -> object
      return(lapply(setNames(as.list(x), nm), function(v) structure(num_json(v), class = "json")))
    }
    if (length(x) == 1) return(structure(num_json(x), class = "json"))
    return(structure(paste0("[", paste(num_json(x), collapse = ","), "]"), class = "json"))
  }
  if (!is.null(names(x)) && length(x) > 0) return(as.list(x))
  x
}
write_fixture <- function(obj) {
  js <- toJSON(prep(obj), auto_unbox = TRUE, null = "null", na = "null",
               json_verbatim = TRUE, pretty = TRUE, digits = NA)
  writeLines(js, file.path(outdir, paste0(obj$id, ".json")))
}
rows <- function(m) {                # matrix -> list of rows (each a numeric array)
  m <- as.matrix(m)
  lapply(seq_len(nrow(m)), function(i) structure(paste0("[", paste(num_json(m[i, ]), collapse = ","), "]"), class = "json"))
}
arr <- function(x) structure(paste0("[", paste(num_json(as.numeric(x)), collapse = ","), "]"), class = "json")
named <- function(x) lapply(setNames(as.list(as.numeric(x)), names(x)),
                            function(v) structure(num_json(v), class = "json"))
## keys every fixture shares (tests/test_datasets.py): nobs, ngroups, fixef, se, vcov
model_info <- function(m) {
  V <- as.matrix(vcov(m))
  list(nobs = nobs(m), ngroups = as.list(ngrps(m)),
       fixef = named(fixef(m)), se = named(setNames(sqrt(diag(V)), names(fixef(m)))),
       vcov = list(names = I(names(fixef(m))),
                   matrix = lapply(seq_len(nrow(V)), function(i) arr(V[i, ]))))
}
