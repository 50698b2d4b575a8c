"""MPLP learning rules (paper 004): protocol, meta-learner, task sources, baselines."""

from engramlab.rules.mplp.protocol import MPLP, GRULearner, MLPLearner, hand_set_sgd, init_params, net_forward

__all__ = ["MPLP", "GRULearner", "MLPLearner", "hand_set_sgd", "init_params", "net_forward"]
