"""Experiment workdir -> tidy DataFrames -> the study's tables, plots and report.

    from codemix.analysis import load_experiment, tables, plots
    data = load_experiment("/tmp/demo")
    tables.relative_change_table(data, baseline="text_only")
"""
from codemix.analysis.load import ExperimentData, load_experiment, parse_gin

__all__ = ["ExperimentData", "load_experiment", "parse_gin"]
