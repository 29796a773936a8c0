-- Argo CD action "resume": clears spec.paused, as `kubectl sluice resume` does (the field is
-- removed, so the patch is spec.paused: null). It does not promote past a pause step: that is
-- the promote action.
-- Argo CD sets `obj` to the live Rollout and patches it with the object returned.
obj.spec.paused = nil
return obj
