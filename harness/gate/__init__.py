"""`harness gate`: fail a CI build on a real regression, stay quiet on noise. config.py holds
what it tolerates, checks.py the checks, judge.py the run of them and its outputs, baselines.py
the saved baselines."""
