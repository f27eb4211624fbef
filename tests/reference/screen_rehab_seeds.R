## Screen candidate seeds for the simulated rehab data set (see
## src/pyglmm/datasets/make_rehab.py).  Usage, from the repository root:
##
##   for s in $(seq 1 200); do python -m pyglmm.datasets.make_rehab /tmp/rehab_screen/$s $s; done
##   Rscript tests/reference/screen_rehab_seeds.R /tmp/rehab_screen 1 200 > screen.csv
##
## For each seed it fits, with lme4::glmer (Laplace), the intercept-only-RE
## model, the random-slope model and the cross-level-interaction model and
## prints estimates, LRT p-values and a closeness score.
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(TRUE)
dir <- args[1]; from <- as.integer(args[2]); to <- as.integer(args[3])
target <- c(-0.41, -0.31, 0.36, 0.29)
cat("seed,b0,b_new,b_male,b_hours,se0,se_new,se_male,se_hours,var_rehab,p_slope,p_cross,b_cross,sd_slope,corr,score,warn\n")
for (s in from:to) {
  d <- read.csv(file.path(dir, s, "rehab.csv"))
  d$treatment <- factor(d$treatment, levels = c("standard", "new"))
  d$gender <- factor(d$gender, levels = c("female", "male"))
  d$rehab <- factor(d$rehab)
  nw <- 0
  fit <- function(f) withCallingHandlers(glmer(f, d, poisson),
                                         warning = function(w) { nw <<- nw + 1; invokeRestart("muffleWarning") })
  m1 <- fit(incidents ~ treatment + gender + hours + (1 | rehab))
  m2 <- fit(incidents ~ treatment + gender + hours + (1 + treatment | rehab))
  m3 <- fit(incidents ~ treatment + gender + hours + treatment:hours + (1 + treatment | rehab))
  b <- fixef(m1); se <- sqrt(diag(as.matrix(vcov(m1))))
  v <- as.data.frame(VarCorr(m1))$vcov[1]
  p_slope <- pchisq(2 * (logLik(m2) - logLik(m1)), 2, lower.tail = FALSE)
  p_cross <- pchisq(2 * (logLik(m3) - logLik(m2)), 1, lower.tail = FALSE)
  vc2 <- as.data.frame(VarCorr(m2))
  score <- sum(((b - target) / se)^2) + (log(v / 1.2) / 0.15)^2
  cat(paste(c(s, sprintf("%.4f", c(b, se, v, p_slope, p_cross, fixef(m3)[5], vc2$sdcor[2], vc2$sdcor[3], score)), nw), collapse = ","), "\n")
}
