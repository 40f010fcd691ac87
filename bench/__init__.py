"""`tether bench`: Tether measured side by side with baselines, in one run."""
