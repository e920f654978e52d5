"""Agents on object observations: PPO training and the evaluation protocol that ships one
(``moc-envs agent``, ``moc-envs agent-eval``)."""
