"""Run files and every number drawn from them: records, files, statistics, run sets, tables."""
