"""Evaluation: judges.py picks the judge of a run by its objective's head (held-out questions for a language model,
preference pairs for a reward model); answers.py and reward.py measure; rewards.py holds GRPO's rule-based rewards."""
