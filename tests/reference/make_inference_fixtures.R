## Reference fixtures for pyglmm.inference (anova LRT tables, Wald confint, car::Anova).
##
## Run from the repository root:
##     Rscript tests/reference/make_inference_fixtures.R
##
## Writes tests/reference/fixtures/inference_<id>.json.  Data are read exactly as in
## make_fixtures.R (shipped CSV + levels JSON).  Tables are stored column-wise
## ({rownames, columns: {name: [values]}}, NA -> null), doubles with 17 digits;
## `printed` holds R's print() output for layout comparisons.
## Wald quantities (confint, car::Anova) are also given for the glmer fit with
## glmerControl(tolPwrss = 1e-12) (keys ending in `_tight`): lme4's default PIRLS tolerance
## leaves its Hessian-based standard errors off by up to a few percent, while the tight fit
## optimises the same objective as pyglmm (see test_lme4_reference.py).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
has_car <- suppressWarnings(suppressPackageStartupMessages(requireNamespace("car", quietly = TRUE)))

outdir <- file.path("tests", "reference", "fixtures")
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

source(file.path("tests", "reference", "common.R"))  # load_data(), datadir, JSON writers

arr <- function(x) structure(paste0("[", paste(num_json(as.numeric(x)), collapse = ","), "]"),
                             class = "json")
table_json <- function(tab) {
  tab <- as.data.frame(tab, check.names = FALSE)
  list(rownames = I(rownames(tab)),
       columns = lapply(as.list(tab), arr))
}
## every fixture also describes one fitted model (for anova tables: the largest) with the keys
## all fixtures share (see test_datasets.py): dataset, nobs, ngroups, fixef, se, vcov
write_fixture <- function(obj, m) {
  obj$id <- paste0("inference_", obj$id)
  obj <- c(obj, model_info(m))
  obj$versions <- list(R = paste(R.version$major, R.version$minor, sep = "."),
                       lme4 = packageDescription("lme4")$Version,
                       car = if (has_car) packageDescription("car")$Version else NULL)
  js <- toJSON(obj, auto_unbox = TRUE, null = "null", na = "null",
               json_verbatim = TRUE, pretty = TRUE, digits = NA)
  writeLines(js, file.path(outdir, paste0(obj$id, ".json")))
  cat("wrote ", obj$id, ".json\n", sep = "")
}
quiet_fit <- function(expr) suppressWarnings(suppressMessages(expr))

rehab <- load_data("rehab")
cbpp <- load_data("cbpp")
sleepstudy <- load_data("sleepstudy")

## ------------------------------------------------------------ anova (LRT) tables
anova_fixture <- function(id, dataset, formulas, fits, call) {
  msgs <- character(0)
  a <- withCallingHandlers(do.call(anova, c(unname(fits), list(model.names = names(fits)))),
                           message = function(m) {
                             msgs <<- c(msgs, conditionMessage(m))
                             invokeRestart("muffleMessage")
                           })
  nm <- names(fits)
  ord <- order(vapply(fits, function(m) attr(logLik(m), "df"), 1))
  write_fixture(list(id = id, dataset = dataset, call = call,
                     formulas = as.list(setNames(formulas, nm)),
                     order = I(nm[ord]),
                     messages = I(msgs),
                     table = table_json(a),
                     printed = I(capture.output(print(a)))),
                fits[[nm[ord][length(ord)]]])
}

f_rehab <- c(m0 = "incidents ~ treatment + gender + (1 | rehab)",
             m1 = "incidents ~ treatment + gender + hours + (1 | rehab)",
             m2 = "incidents ~ treatment + gender + hours + (1 + treatment | rehab)")
fits_rehab <- lapply(f_rehab, function(f) quiet_fit(glmer(as.formula(f), rehab, family = poisson)))
anova_fixture("anova_rehab", "rehab", f_rehab, fits_rehab, "anova(m0, m1, m2)")

f_sleep <- c(fm0 = "Reaction ~ Days + (1 | Subject)",
             fm1 = "Reaction ~ Days + (Days | Subject)")
fits_sleep <- lapply(f_sleep, function(f) quiet_fit(lmer(as.formula(f), sleepstudy)))
anova_fixture("anova_sleep", "sleepstudy", f_sleep, fits_sleep, "anova(fm0, fm1)  # REML fits")

f_cbpp <- c(g0 = "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
            g1 = "cbind(incidence, size - incidence) ~ period + (1 | herd)")
fits_cbpp <- lapply(f_cbpp, function(f) quiet_fit(glmer(as.formula(f), cbpp, family = binomial)))
anova_fixture("anova_cbpp", "cbpp", f_cbpp, fits_cbpp, "anova(g0, g1)")

## ------------------------------------------------------------ Wald confint
tight <- function(m) {
  if (!is(m, "glmerMod")) return(m)
  quiet_fit(update(m, control = glmerControl(tolPwrss = 1e-12)))
}
confint_fixture <- function(id, dataset, formula, m, call) {
  ci <- confint(m, method = "Wald")
  mt <- tight(m)
  cit <- confint(mt, method = "Wald")
  write_fixture(list(id = id, dataset = dataset, formula = formula, call = call,
                     loglik = as.numeric(logLik(m)),
                     rownames = I(rownames(ci)), colnames = I(colnames(ci)),
                     lower = arr(ci[, 1]), upper = arr(ci[, 2]),
                     loglik_tight = as.numeric(logLik(mt)),
                     lower_tight = arr(cit[, 1]), upper_tight = arr(cit[, 2])), m)
}
confint_fixture("confint_cbpp", "cbpp", f_cbpp[["g1"]], fits_cbpp$g1,
                "confint(m, method = \"Wald\")")
confint_fixture("confint_rehab", "rehab", f_rehab[["m2"]], fits_rehab$m2,
                "confint(m, method = \"Wald\")")
confint_fixture("confint_sleep", "sleepstudy", f_sleep[["fm1"]], fits_sleep$fm1,
                "confint(m, method = \"Wald\")")

## ------------------------------------------------------------ car::Anova (Wald chi-square)
if (has_car) {
  car_fixture <- function(id, dataset, formula, m) {
    a3 <- car::Anova(m, type = "III")
    a2 <- car::Anova(m, type = "II")
    mt <- tight(m)
    write_fixture(list(id = id, dataset = dataset, formula = formula,
                       loglik = as.numeric(logLik(m)),
                       type3 = table_json(a3), type2 = table_json(a2),
                       loglik_tight = as.numeric(logLik(mt)),
                       fixef_tight = arr(fixef(mt)), fixef_names = I(names(fixef(mt))),
                       vcov_tight = lapply(seq_len(length(fixef(mt))),
                                           function(i) arr(as.matrix(vcov(mt))[i, ])),
                       type3_tight = table_json(car::Anova(mt, type = "III")),
                       type2_tight = table_json(car::Anova(mt, type = "II")),
                       printed3 = I(capture.output(print(a3))),
                       printed2 = I(capture.output(print(a2)))), m)
  }
  f_cross <- "incidents ~ treatment * hours + gender + (1 + treatment | rehab)"
  m_cross <- quiet_fit(glmer(as.formula(f_cross), rehab, family = poisson))
  car_fixture("car_rehab_cross", "rehab", f_cross, m_cross)
  car_fixture("car_cbpp", "cbpp", f_cbpp[["g1"]], fits_cbpp$g1)
} else {
  cat("package car not available: car::Anova fixtures skipped\n")
}
