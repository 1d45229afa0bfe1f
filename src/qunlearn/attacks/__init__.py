"""Recovery attacks: transforms model -> model that try to bring forgotten knowledge back
(relearning, held-out relearning, benign fine-tuning, pruning, weight noise, interpolation).

Each attack is one module: a torch-free :class:`~qunlearn.plugins.AttackSpec` (settings with the
source's defaults, the grid of points, traits) registered once in ``ATTACKS``, and an
implementation (a :class:`base.Attack` subclass) imported only when a job runs it. The planner
(``Experiment.attack_jobs``) applies every configured attack to the headline arms and the controls;
``stages.attack`` runs one point on one model.
"""
