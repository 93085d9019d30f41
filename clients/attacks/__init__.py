"""Model-poisoning attacks as pure functions of the benign updates they may see."""
