"""Evaluation of FUSAR-GPT: the paper's task metrics (metrics.py) over {task, prediction, reference} records."""

from model.eval.metrics import evaluate, report_table

__all__ = ["evaluate", "report_table"]
