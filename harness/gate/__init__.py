"""`harness gate`: fail a CI build on a real regression, stay quiet on noise. config.py holds
what it tolerates, figures.py the run sets it reads (refused where a figure cannot have been
measured), checks.py the checks, judge.py the run of them and its outputs, baselines.py the saved
baselines."""
