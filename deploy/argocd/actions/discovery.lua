-- Argo CD actions of a Sluice Rollout: the same as `kubectl sluice promote [--full]`, `abort`,
-- `retry`, `pause` and `resume`. An action is disabled when the plugin would refuse it, that is
-- when the controller would ignore the request it writes.
local status = obj.status or {}
local update = status.updateRevision
local seen = status.observedGeneration ~= nil and status.observedGeneration == obj.metadata.generation
local atRest = update ~= nil and status.stableRevision == update
-- Before the controller has written a revision, or while a new spec at rest is not yet seen,
-- no request can name the revision it is for.
local known = update ~= nil and not (atRest and not seen)
local aborted = status.abort == true
local rollingOut = known and not atRest and not aborted
local paused = obj.spec.paused == true

local actions = {}
actions["promote"] = {["disabled"] = not rollingOut}
actions["promote-full"] = {["disabled"] = not rollingOut}
actions["abort"] = {["disabled"] = not rollingOut}
actions["retry"] = {["disabled"] = not (known and aborted)}
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not paused}
return actions
