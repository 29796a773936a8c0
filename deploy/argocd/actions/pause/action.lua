-- Argo CD action "pause": sets spec.paused, as `kubectl sluice pause` does; the controller holds
-- the rollout where it is until resumed.
-- Argo CD sets `obj` to the live Rollout and patches it with the object returned.
obj.spec.paused = true
return obj
