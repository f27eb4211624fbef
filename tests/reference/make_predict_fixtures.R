## Reference predictions from lme4's predict.merMod for tests/test_predict.py.
##
## Run from the repository root:
##     Rscript tests/reference/make_predict_fixtures.R
##
## Data are read exactly as tests/reference/make_fixtures.R does (the CSV files
## pyglmm ships, factor levels from <name>.levels.json).  GLMMs are fitted with
## PIRLS run to convergence (tolPwrss = 1e-12) so that the estimates match
## pyglmm's converged ones closely.  One file per model:
## tests/reference/fixtures/predict_<id>.json holding the estimates, each newdata
## frame (as columns) and predict(m, newdata, re.form = NA / NULL [/ a subset],
## type = "link" / "response"), with allow.new.levels = TRUE where new levels occur.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

outdir <- file.path("tests", "reference", "fixtures")
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

source(file.path("tests", "reference", "common.R"))  # load_data(), datadir, JSON writers

frame_json <- function(nd) {         # newdata as columns: numbers, or strings for factors
  lapply(nd, function(col) if (is.numeric(col)) arr(col) else as.character(col))
}

## keys all fixtures share (see tests/test_datasets.py): id = file stem, dataset, nobs, ngroups,
## fixef, se, vcov

write_fixture <- function(id, dataset, formula, call, m, newdatas, re_forms) {
  preds <- list()
  for (ndn in names(newdatas)) {
    nd <- newdatas[[ndn]]
    out <- list()
    for (rf in names(re_forms)) {
      for (ty in c("link", "response")) {
        p <- predict(m, newdata = nd, re.form = re_forms[[rf]], type = ty, allow.new.levels = TRUE)
        out[[paste(rf, ty, sep = "_")]] <- arr(p)
      }
    }
    preds[[ndn]] <- list(newdata = frame_json(nd), predictions = out)
  }
  obj <- list(id = paste0("predict_", id), dataset = dataset, formula = formula, call = call,
              versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                              lme4 = packageDescription("lme4")$Version),
              re_forms = lapply(re_forms, function(f) if (is.null(f)) "NULL" else
                                if (identical(f, NA)) "NA" else paste(deparse(f), collapse = "")),
              theta = arr(getME(m, "theta")), cases = preds)
  obj <- c(obj, model_info(m))
  js <- toJSON(obj, auto_unbox = TRUE, null = "null", na = "null",
               json_verbatim = TRUE, pretty = TRUE, digits = NA)
  writeLines(js, file.path(outdir, paste0("predict_", id, ".json")))
  cat("wrote predict_", id, ".json\n", sep = "")
}

ctrl <- glmerControl(tolPwrss = 1e-12)
RF <- list(population = NA, conditional = NULL)

## (a) rehab, Poisson, random intercept and treatment slope per centre
rehab <- load_data("rehab")
f_rehab <- incidents ~ treatment + gender + hours + (1 + treatment | rehab)
m <- glmer(f_rehab, data = rehab, family = poisson, control = ctrl)
nd_rehab <- data.frame(
  rehab = c(1, 1, 5, 5, 12, 999, 999, 7),
  treatment = factor(c("standard", "new", "new", "standard", "new", "standard", "new", "new"),
                     levels = levels(rehab$treatment)),
  gender = factor(c("male", "female", "female", "male", "male", "female", "male", "female"),
                  levels = levels(rehab$gender)),
  hours = c(4.4, 2.5, 7.25, 0, 10, 5, 5, NA))
write_fixture("rehab", "rehab", deparse(f_rehab), "glmer(f, rehab, poisson, control = glmerControl(tolPwrss = 1e-12))",
              m, list(data20 = rehab[1:20, ], new = nd_rehab),
              RF)
## (re.form = ~(1 | rehab) is not used here: lme4 1.1-31's mkNewReTrms sets treatment to NA
##  and then fails assigning its contrasts; tests check that subset by direct computation)

## (b) cbpp, binomial with cbind response, random intercept per herd
cbpp <- load_data("cbpp")
f_cbpp <- cbind(incidence, size - incidence) ~ period + (1 | herd)
m <- glmer(f_cbpp, data = cbpp, family = binomial, control = ctrl)
nd_cbpp <- data.frame(herd = factor(c("1", "3", "15", "7"), levels = levels(cbpp$herd)),
                      period = factor(c("4", "1", "2", "3"), levels = levels(cbpp$period)))
write_fixture("cbpp", "cbpp", deparse(f_cbpp), "glmer(f, cbpp, binomial, control = glmerControl(tolPwrss = 1e-12))",
              m, list(data = cbpp, new = nd_cbpp), RF)

## (c) sleepstudy, LMM (REML), correlated intercept and slope; Days outside 0..9, a new subject
sleep <- load_data("sleepstudy")
f_sleep <- Reaction ~ Days + (Days | Subject)
m <- lmer(f_sleep, data = sleep)
nd_sleep <- data.frame(Days = c(0, 2.5, 12, -1, 20, 4),
                       Subject = c("308", "309", "372", "333", "999", "999"))
write_fixture("sleep", "sleepstudy", deparse(f_sleep), "lmer(f, sleepstudy)", m,
              list(data = sleep[c(1:12, 170:180), ], new = nd_sleep),
              c(RF, list(slope_only = ~(0 + Days | Subject))))
