"""Match decisions: calibrated score curves, cohort score normalisation and operating points."""
