"""How fast *any* valid judge can detect an error-rate regression: the power of the best
fixed-horizon test, as a floor under every judge's time to detect.

Comparing a canary's error rate with the baseline's when neither rate is known is the
two-sample Poisson problem. Given K errors in both versions together, the canary's share of
them is Binomial(K, pi) with ``pi = rho*s / (rho*s + 1 - s)`` (``s`` the canary's traffic
share, ``rho`` the ratio of the two error rates), and the conditional test of ``rho <= 1`` —
randomised at its boundary so that its level is exactly alpha — is the uniformly most powerful
unbiased test (Lehmann, *Testing Statistical Hypotheses*, 4.4–4.5). It is told the exact
horizon and needs no correction for repeated looks, which no rollout judge gets for free.

A sequential judge that false-aborts at most alpha over the whole rollout, asked "did you
abort by time T?", is a level-alpha test at T; if it is also unbiased, the probability that it
detected by T is at most this power. So the horizon where the power reaches one half is a
floor under the median time to detect of every such judge.

``python -m bench.judge.bound`` writes ``bench/results/judge-bound.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom, poisson

from bench.judge.streams import BASELINE_ERROR, RATE_RPS, WEIGHT

RESULTS = Path(__file__).resolve().parents[1] / "results"


def conditional_power(k: int, share: float, rho: float, alpha: float) -> float:
    """Power of the randomised level-alpha test of rho <= 1 given ``k`` errors in all."""
    if k == 0:
        return alpha  # no data: the randomised test rejects with probability alpha
    pi0 = share
    pi1 = rho * share / (rho * share + 1.0 - share)
    # smallest c with P0(X >= c) <= alpha; reject above it, randomise at c - 1
    c = int(binom.isf(alpha, k, pi0)) + 1
    tail0 = float(binom.sf(c - 1, k, pi0))  # P0(X >= c)
    at0 = float(binom.pmf(c - 1, k, pi0))
    gamma = (alpha - tail0) / at0 if at0 > 0 else 0.0
    return float(binom.sf(c - 1, k, pi1)) + gamma * float(binom.pmf(c - 1, k, pi1))


def error_ratio_power(
    horizon_s: float,
    rho: float,
    alpha: float,
    rate_rps: float = RATE_RPS,
    share: float = WEIGHT,
    baseline_error: float = BASELINE_ERROR,
) -> float:
    """Power at ``horizon_s`` seconds of the most powerful unbiased level-alpha test, when the
    canary's error rate is ``rho`` × the baseline's: the conditional power averaged over the
    Poisson number of errors."""
    mean = rate_rps * horizon_s * baseline_error * ((1.0 - share) + rho * share)
    hi = int(mean + 12.0 * np.sqrt(mean) + 30.0)
    ks = np.arange(hi + 1)
    weights = poisson.pmf(ks, mean)
    powers = [conditional_power(int(k), share, rho, alpha) for k in ks]
    return float(np.dot(weights, powers))


def median_floor(rho: float, alpha: float, step_s: float = 10.0, limit_s: float = 3600.0) -> float:
    """The first horizon (on a ``step_s`` grid) at which the power reaches one half."""
    t = step_s
    while t <= limit_s:
        if error_ratio_power(t, rho, alpha) >= 0.5:
            return t
        t += step_s
    return float("inf")


def report(alpha: float = 0.01) -> dict[str, object]:
    horizons = (60, 120, 180, 240, 360)
    cases = {}
    for name, rho in (("err-x1.5", 1.5), ("err-x2", 2.0), ("err-x5", 5.0)):
        cases[name] = {
            "rho": rho,
            "power_at_s": {str(t): round(error_ratio_power(t, rho, alpha), 3) for t in horizons},
            "median_time_to_detect_floor_s": median_floor(rho, alpha),
        }
    return {
        "model": {
            "rate_rps": RATE_RPS,
            "canary_share": WEIGHT,
            "baseline_error": BASELINE_ERROR,
            "alpha": alpha,
            "test": "conditional binomial test of rho <= 1, randomised, fixed horizon (UMPU)",
        },
        "scenarios": cases,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else RESULTS
    result = report()
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge-bound.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
