## lme4 on seven sleepstudy responses simulated from the fitted (Days | Subject) model (pyglmm's
## parametric bootstrap, seed 1, replicates 3, 46, 51, 54, 82, 88, 97). From lme4's start
## L-BFGS-B used to stop on the corner theta_1 = theta_3 = 0 for these; lme4 finds the interior
## optimum. Run from the repository root:
##     Rscript tests/reference/make_boundary_fixtures.R
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
d <- read.csv("tests/reference/boundary/sleepstudy_boundary_reps.csv")
d$Subject <- factor(d$Subject)
out <- list()
for (col in grep("^y", names(d), value = TRUE)) {
  d$yy <- d[[col]]
  m <- lmer(yy ~ Days + (Days | Subject), d)
  out[[col]] <- list(REML = as.numeric(logLik(m)), theta = unname(getME(m, "theta")),
                     singular = isSingular(m))
}
writeLines(toJSON(out, digits = I(17), auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/boundary/sleepstudy_boundary_reps.json")
