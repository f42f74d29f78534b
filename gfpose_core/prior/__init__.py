"""The paper's per-frame pose prior: the sub-VP SDE, the score network, hierarchical masking, samplers, the
posterior-mean networks, hypotheses and training."""
