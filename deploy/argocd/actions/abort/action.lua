-- Argo CD action "abort": writes the request `kubectl sluice abort` writes, into
-- the annotation sluice.dev/commands, for the revision the status names (docs/argocd.md).
-- Argo CD sets `obj` to the live Rollout and patches it with the object returned; an error
-- refuses the action with its message. Its sandbox has Lua 5.1's base and table libraries and
-- os.time/os.date: no string or JSON library, so the annotation is written whole, holding this
-- request only.
local status = obj.status or {}
local update = status.updateRevision
if update == nil then
  error("the Sluice controller has not written a status for this Rollout yet: wait for it, then try again", 0)
end
local seen = status.observedGeneration ~= nil and status.observedGeneration == obj.metadata.generation
local atRest = status.stableRevision == update
if atRest and not seen then
  error("the Sluice controller has not seen the latest spec yet: try again once the Rollout shows the new revision", 0)
end
if atRest then
  error("revision " .. update .. " is stable and nothing is rolling out: nothing to abort", 0)
end
if status.abort then
  error("revision " .. update .. " is already aborted", 0)
end

-- Unique per request, so the controller acts on it once: the time (to the second, all the
-- sandbox's clock gives) and the resourceVersion read, which changes with every write.
local id = os.date("!%Y%m%dT%H%M%SZ") .. "-argocd-" .. tostring(obj.metadata.resourceVersion or obj.metadata.generation)
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["sluice.dev/commands"] = '{"abort":{"id":"' .. id .. '","revision":"' .. update .. '"}}'
return obj
