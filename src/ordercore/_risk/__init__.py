"""Risk control and anti-fraud: rules, lists, velocity, decisions and the review queue.

Empty for now: the risk issue fills it. Rules are pure domain modules here; what they read
comes through the unit of work, like every other capability."""
