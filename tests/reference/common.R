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
