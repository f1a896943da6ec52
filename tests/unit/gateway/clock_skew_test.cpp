// Clock-skew estimator tests: in progress.
