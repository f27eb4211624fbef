# glmmTMB reference for a binomial cloglog GLMM whose linear predictor saturates (mu rounds to 1)
# in rows with a failure: tests/test_stable_loglik.py. Data: tests/reference/make_saturated_data.py
# (fixtures/cloglog_saturated.csv). Run from the repository root:
#   Rscript tests/reference/make_saturated_fixtures.R
# glmmTMB evaluates the exact density (TMB's dbinom_robust, on the logit scale), so its optimum
# is the reference; lme4's glmer stops with "PIRLS step-halvings failed" on these data.
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
d <- read.csv("tests/reference/fixtures/cloglog_saturated.csv")
m <- glmmTMB(cbind(k, f) ~ x + (1 | g), d, family = binomial(link = "cloglog"))
# glmmTMB's objective (its Laplace approximation, inner modes re-optimised) at the estimates
# pyglmm 1cb5144 reported when mu was clamped at 1 - eps (laplace = "observed"):
old <- c(-0.145151, 2.452806, log(0.492925))
ll_old <- -m$obj$fn(old)
lme4_msg <- tryCatch({lme4::glmer(cbind(k, f) ~ x + (1 | g), d, family = binomial(link = "cloglog")); "ok"},
                     error = function(e) conditionMessage(e))
out <- list(
  logLik = as.numeric(logLik(m)), fixef = as.list(fixef(m)$cond),
  se = as.list(sqrt(diag(vcov(m)$cond))), sd = attr(VarCorr(m)$cond$g, "stddev")[[1]],
  logLik_at_clamped_estimates = ll_old, lme4 = lme4_msg,
  versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                  TMB = as.character(packageVersion("TMB"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/reference/fixtures/cloglog_saturated.json")
