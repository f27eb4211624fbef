## Profile-likelihood intervals from lme4 (confint(m), method = "profile") for pyglmm's tests.
## Run from the repository root: Rscript tests/reference/make_profile_fixtures.R
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
source(file.path("tests", "reference", "common.R"))  # load_data(), datadir, JSON writers
out <- function(id, m, ci, dataset) {
  res <- list(id = paste0("profile_", id), dataset = dataset, nobs = nobs(m),
              ngroups = as.list(ngrps(m)), fixef = as.list(fixef(m)),
              se = as.list(sqrt(diag(as.matrix(vcov(m))))),
              vcov = list(names = I(colnames(vcov(m))), matrix = unname(as.matrix(vcov(m)))),
              logLik = as.numeric(logLik(m)), lme4 = as.character(packageVersion("lme4")),
              rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path("tests", "reference", "fixtures", paste0("profile_", id, ".json")))
}
tight <- glmerControl(tolPwrss = 1e-12)
cbpp <- load_data("cbpp")
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, control = tight)
out("cbpp", m, confint(m, method = "profile"), "cbpp")
rehab <- load_data("rehab")
m <- glmer(incidents ~ treatment + gender + hours + (1 | rehab), rehab, poisson, control = tight)
out("rehab", m, confint(m, method = "profile"), "rehab")
ss <- load_data("sleepstudy")
m <- lmer(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
out("sleep_ml", m, confint(m, method = "profile", parm = "beta_"), "sleepstudy")
ds <- load_data("dyestuff")
m <- lmer(Yield ~ 1 + (1 | Batch), ds, REML = FALSE)
out("dyestuff_ml", m, confint(m, method = "profile"), "dyestuff")
m <- glmer(incidents ~ treatment + gender + hours + (1 + treatment | rehab), rehab, poisson, control = tight)
out("rehab_slope", m, confint(m, method = "profile", parm = "theta_"), "rehab")
m <- lmer(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
out("sleep_ml_theta", m, confint(m, method = "profile", parm = "theta_"), "sleepstudy")
