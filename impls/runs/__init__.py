"""The run engine: one run session (session.py) and the loops that drive it -- offline on a dataset
(offline.py), online in gymnasium environments (online.py) and compiled for jax environments (compiled.py) --
with every way of calling an agent's update in one place (updates.py)."""
