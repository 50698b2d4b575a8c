"""Write rules that are not tied to one memory (gradient with meta-learned rates, MAML, MPLP)."""

from engramlab.rules.base import FastParams, Objective, WriteRule, build_rule, register_rule, rule_class, rule_names

__all__ = ["FastParams", "Objective", "WriteRule", "build_rule", "register_rule", "rule_class", "rule_names"]
