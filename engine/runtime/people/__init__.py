"""People: administering users, teams and tokens (audited), and the ownership transfer rule.

* :mod:`.transfer` -- the write step enforcing the roles' ``transfer: none | own_team | all``;
* :mod:`.admin` -- user and team administration (deactivate with the open records to hand over,
  reactivate, roles, passwords, nested teams and extra memberships) and token listing;
* :mod:`.plugin` -- the feature plugin (:data:`engine.plugins.host.DEFAULT_PLUGINS`).
"""
