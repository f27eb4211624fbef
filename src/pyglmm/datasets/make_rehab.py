"""Generator of the simulated ``rehab`` data set (cardiac rehabilitation).

Run ``python -m pyglmm.datasets.make_rehab`` to rewrite
``pyglmm/datasets/data/rehab.csv`` and ``rehab.levels.json``; the output is
byte-for-byte deterministic (numpy ``Generator`` / PCG64 with a fixed seed).
``python -m pyglmm.datasets.make_rehab DIR [SEED]`` writes into DIR instead
(used for the seed screen).

Design
------
* 110 rehabilitation centres (``rehab`` = 1..110), 1000 patients in total.
  Centre sizes are unbalanced: every centre gets 3 patients, and the other
  670 are spread by a multinomial draw with Gamma(2, 1)-distributed centre
  weights.
* ``hours`` (centre level): hours per week the centre is open to cardiac
  patients, ``N(4.2, 1.0)`` clipped to [2, 7] and rounded to one decimal.
* ``treatment`` (patient level): ``"new"`` with probability 0.5, else
  ``"standard"``; ``new`` below is its 0/1 indicator.
* ``gender`` (patient level): ``"male"`` with probability 0.55, else
  ``"female"``; ``male`` is its 0/1 indicator.
* Centre random effects ``(u0_j, u1_j) ~ N2(0, Sigma)`` with
  ``sd(u0) = 1.12`` (variance 1.2544), ``sd(u1) = 0.35`` and
  ``corr(u0, u1) = -0.3``.

Generating equation (patient *i* in centre *j*)::

    incidents_ij ~ Poisson(mu_ij)
    log(mu_ij) = -0.41 - 0.31*new_ij + 0.36*male_ij + 0.29*hours_j
                 - 0.12*(hours_j - 4.2)*new_ij
                 + u0_j + u1_j*new_ij

The cross-level interaction is parameterised around the fixed value 4.2
(the design mean of ``hours``), so -0.31 is the effect of the new treatment
in a centre open 4.2 h/week and 0.29 the effect of one more weekly hour for
``standard`` patients.  In the uncentred lme4 parameterisation
``incidents ~ treatment + gender + hours + treatment:hours + (1 + treatment | rehab)``
the true values are therefore: intercept -0.41, treatmentnew
-0.31 + 0.12*4.2 = 0.194, gendermale 0.36, hours 0.29, treatmentnew:hours -0.12.

Draw order (fixed, so the file is reproducible): centre sizes (gamma
weights, multinomial), hours, random effects, then per patient treatment,
gender and finally the Poisson responses.

Seed choice and checks
----------------------
Seeds 1..300 were screened with R 4.2.2 / lme4 1.1-31 (``glmer``, Laplace)
by ``tests/reference/screen_rehab_seeds.R`` (kept out of the package; the
criteria are written here).  A seed qualified when

1. the LRT of ``(1 + treatment | rehab)`` against ``(1 | rehab)`` (both with
   ``treatment + gender + hours``; naive chi-square with 2 df) has p < 0.05,
2. the LRT of adding ``treatment:hours`` to the random-slope model
   (1 df) has p < 0.05, and
3. the fit of ``incidents ~ treatment + gender + hours + (1 | rehab)`` is near
   the teaching values (intercept -0.4, treatment -0.31, gender 0.36,
   hours 0.29, rehab variance about 1.2).

4. none of the three fits gave a convergence warning.

Of the 300 seeds screened (1..300), 299 passed 1, 167 passed 2, and 48
passed 1, 2 and 4.  For those, a closeness score was computed for the
random-intercept fit in 3: the sum over the four fixed effects of
``((estimate - target) / SE)^2`` plus ``(log(variance / 1.2) / 0.15)^2``.
Three seeds scored below 2 (205: 1.33, 65: 1.55, 99: 1.58); among them the
one whose random-slope fit is closest to the generating sd 0.35 and
correlation -0.3 was kept: ``SEED = 99``.

lme4 1.1-31 fit of ``incidents ~ treatment + gender + hours + (1 | rehab)``
for seed 99: intercept -0.539, treatmentnew -0.294, gendermale 0.364,
hours 0.334, rehab variance 1.03.  Random-slope model: sd(treatment) 0.370,
corr -0.19, LRT p < 1e-4 (2 df);  cross-level model: treatmentnew:hours
-0.157, LRT p = 0.004 (1 df).  Full-precision results are stored as the
``rehab_*`` fixtures in ``tests/reference/fixtures``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 99  # chosen by the screen described in the module docstring

N_CENTRES = 110
N_PATIENTS = 1000
MIN_PER_CENTRE = 3

BETA_INTERCEPT = -0.41
BETA_NEW = -0.31
BETA_MALE = 0.36
BETA_HOURS = 0.29
BETA_NEW_HOURS = -0.12
HOURS_CENTRE = 4.2  # the interaction is centred at this fixed value

SD_INTERCEPT = 1.12
SD_SLOPE = 0.35
CORR = -0.3

P_NEW = 0.5
P_MALE = 0.55

TREATMENT_LEVELS = ["standard", "new"]
GENDER_LEVELS = ["female", "male"]
COLUMNS = ["rehab", "treatment", "gender", "hours", "incidents"]


def generate(seed: int = SEED) -> pd.DataFrame:
    """Simulate the data set with the given seed (see module docstring)."""
    rng = np.random.default_rng(seed)

    # centre sizes: at least MIN_PER_CENTRE each, the rest multinomial
    weights = rng.gamma(2.0, 1.0, size=N_CENTRES)
    extra = rng.multinomial(N_PATIENTS - MIN_PER_CENTRE * N_CENTRES, weights / weights.sum())
    sizes = MIN_PER_CENTRE + extra

    # centre-level covariate
    hours = np.round(np.clip(rng.normal(4.2, 1.0, size=N_CENTRES), 2.0, 7.0), 1)

    # centre random effects
    cov = CORR * SD_INTERCEPT * SD_SLOPE
    sigma = np.array([[SD_INTERCEPT**2, cov], [cov, SD_SLOPE**2]])
    u = rng.multivariate_normal(np.zeros(2), sigma, size=N_CENTRES, method="cholesky")

    centre = np.repeat(np.arange(N_CENTRES), sizes)
    new = (rng.random(N_PATIENTS) < P_NEW).astype(np.int64)
    male = (rng.random(N_PATIENTS) < P_MALE).astype(np.int64)
    h = hours[centre]

    eta = (
        BETA_INTERCEPT
        + BETA_NEW * new
        + BETA_MALE * male
        + BETA_HOURS * h
        + BETA_NEW_HOURS * (h - HOURS_CENTRE) * new
        + u[centre, 0]
        + u[centre, 1] * new
    )
    incidents = rng.poisson(np.exp(eta)).astype(np.int64)

    return pd.DataFrame(
        {
            "rehab": (centre + 1).astype(np.int64),
            "treatment": pd.Categorical.from_codes(new, TREATMENT_LEVELS),
            "gender": pd.Categorical.from_codes(male, GENDER_LEVELS),
            "hours": h.astype(np.float64),
            "incidents": incidents,
        },
        columns=COLUMNS,
    )


def to_csv_text(df: pd.DataFrame) -> str:
    """Render the data frame as the exact CSV text that is shipped."""
    lines = [",".join(COLUMNS)]
    for r, t, g, h, y in zip(
        df["rehab"], df["treatment"].astype(str), df["gender"].astype(str),
        df["hours"], df["incidents"],
    ):
        lines.append(f"{int(r)},{t},{g},{h:.1f},{int(y)}")
    return "\n".join(lines) + "\n"


def levels_json() -> str:
    return json.dumps({"treatment": TREATMENT_LEVELS, "gender": GENDER_LEVELS}, indent=2) + "\n"


def write(directory: Path | str | None = None, seed: int = SEED) -> Path:
    """Write ``rehab.csv`` and ``rehab.levels.json`` into *directory*
    (default: the package data directory); returns the CSV path."""
    directory = Path(directory) if directory is not None else Path(__file__).parent / "data"
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "rehab.csv"
    csv_path.write_bytes(to_csv_text(generate(seed)).encode("ascii"))
    (directory / "rehab.levels.json").write_bytes(levels_json().encode("ascii"))
    return csv_path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    directory = argv[0] if argv else None
    seed = int(argv[1]) if len(argv) > 1 else SEED
    print(write(directory, seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
