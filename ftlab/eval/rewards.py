"""Rule-based rewards for online RL (objective=rlhf): Python callables named in objective.reward_funcs."""

from ftlab.eval.answers import states_facts as _states_facts


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion  # chat or plain


def states_facts(completions, facts=None, **kwargs) -> list:
    """1.0 when the answer states every expected fact of its prompt (the data's `facts` column), else 0.0."""
    if facts is None:
        raise ValueError("ftlab.eval.rewards.states_facts needs a 'facts' column in the prompt data")
    return [1.0 if _states_facts(_text(c), f) else 0.0 for c, f in zip(completions, facts)]


def concise(completions, max_words: int = 40, **kwargs) -> list:
    """0 up to max_words, then -0.02 per extra word: keeps a reward model from paying for rambling."""
    return [-0.02 * max(0, len(_text(c).split()) - max_words) for c in completions]
