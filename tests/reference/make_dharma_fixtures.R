## Reference values from R's DHARMa 0.5.0 for tests/test_dispersion_calibration.py.
##
## Run from the repository root (DHARMa installed into a private library):
##     mkdir -p "$HOME/Rlib" && R CMD INSTALL --library="$HOME/Rlib" /path/to/DHARMa
##     R_LIBS="$HOME/Rlib" Rscript tests/reference/make_dharma_fixtures.R
##
## Model: the rehab data (read exactly as pyglmm ships them, common.R) with
## incidents ~ treatment + gender + hours + (1 + treatment | rehab), Poisson, lme4 Laplace
## with PIRLS to convergence (tolPwrss = 1e-12).  Written to
## tests/reference/fixtures/dharma_rehab.json:
##   * fitted_re0: predict(m, re.form = NA, type = "response"), DHARMa's
##     fittedPredictedResponse (getFitted.default), which testDispersion(type = "DHARMa")
##     centres on; obs_var_re0 = var(y - fitted_re0) (deterministic given the fit);
##   * testDispersion(type = "DHARMa") on simulateResiduals(n = 2000) with
##     simulateREs = "conditional" (DHARMa 0.5.0's default, lme4 re.form = NULL) and
##     "unconditional" (re.form = NA): statistic = var(y - f0) / mean_s var(y*_s - f0),
##     p-value, and the mean simulated spread;
##   * testZeroInflation in both modes (observed / mean simulated zeros);
##   * testDispersion(type = "PearsonChisq") (sum of squared Pearson residuals / df.residual,
##     chi-square p, alternative = "greater");
##   * testDispersion on simulateResiduals(refit = TRUE, n = 200, simulateREs =
##     "unconditional"): observed Pearson chi-square against those of lme4 refits to data
##     simulated with new random effects (statistic, p, mean refitted chi-square).
## The simulation-based numbers carry Monte Carlo error (about 1% for the ratios at n = 2000);
## the test compares with tolerances of that size.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(DHARMa)
})

outdir <- file.path("tests", "reference", "fixtures")
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
source(file.path("tests", "reference", "common.R"))  # load_data(), JSON writers

rehab <- load_data("rehab")
f <- incidents ~ treatment + gender + hours + (1 + treatment | rehab)
m <- glmer(f, data = rehab, family = poisson, control = glmerControl(tolPwrss = 1e-12))
y <- rehab$incidents
f0 <- predict(m, re.form = NA, type = "response")

disp <- function(mode, n) {
  s <- simulateResiduals(m, n = n, simulateREs = mode, seed = 123)
  td <- testDispersion(s, plot = FALSE)
  tz <- testZeroInflation(s, plot = FALSE)
  spread <- apply(s$simulatedResponse, 2, function(x) var(x - s$fittedPredictedResponse))
  stopifnot(max(abs(s$fittedPredictedResponse - f0)) < 1e-12)
  list(dispersion_statistic = unname(td$statistic), dispersion_p = td$p.value,
       mean_sim_var_re0 = mean(spread),
       zero_inflation_statistic = unname(tz$statistic), zero_inflation_p = tz$p.value,
       nsim = n, seed = 123)
}
t0 <- Sys.time()
cond <- disp("conditional", 2000)
uncond <- disp("unconditional", 2000)
pc <- testDispersion(m, type = "PearsonChisq", alternative = "greater", plot = FALSE)
sr <- simulateResiduals(m, n = 200, refit = TRUE, simulateREs = "unconditional", seed = 123)
tr <- testDispersion(sr, plot = FALSE)
refit_chisq <- colSums(sr$refittedPearsonResiduals^2, na.rm = FALSE)

out <- list(
  id = "dharma_rehab", dataset = "rehab", formula = deparse(f),
  call = "glmer(f, rehab, poisson, control = glmerControl(tolPwrss = 1e-12))",
  versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                  lme4 = as.character(packageVersion("lme4")),
                  DHARMa = as.character(packageVersion("DHARMa"))),
  nobs = nobs(m), fixef = named(fixef(m)), theta = arr(getME(m, "theta")),
  fitted_re0 = arr(f0), obs_var_re0 = var(y - f0),
  pearson_chisq = sum(residuals(m, type = "pearson")^2), df_residual = df.residual(m),
  pearson_ratio = unname(pc$statistic), pearson_p_greater = pc$p.value,
  conditional = cond, unconditional = uncond,
  refit = list(dispersion_statistic = unname(tr$statistic), dispersion_p = tr$p.value,
               mean_refit_chisq = mean(refit_chisq, na.rm = TRUE),
               n_failed = sum(is.na(refit_chisq)), nsim = 200, seed = 123,
               simulateREs = "unconditional"),
  seconds = as.numeric(difftime(Sys.time(), t0, units = "secs")))
write_fixture(out)
cat("wrote", file.path(outdir, "dharma_rehab.json"), "\n")
