-- Argo CD health of a Sluice Rollout (sluice.dev/v1alpha1), from the status the controller writes.
-- Argo CD sets `obj` to the live Rollout and reads the table returned: {status, message}.
-- Its sandbox has Lua 5.1's base and table libraries and os.time/os.date, nothing else.
local health = {}
local status = obj.status
local generation = obj.metadata.generation

-- A phase counts only once the controller has seen the current spec: right after a sync, a
-- status that still says Healthy describes the previous spec.
if status == nil or status.phase == nil or status.observedGeneration == nil or status.observedGeneration ~= generation then
  health.status = "Progressing"
  health.message = "the Sluice controller has not seen the latest spec yet (generation " .. tostring(generation) .. ")"
  return health
end

local phase = status.phase
if phase == "Healthy" then
  health.status = "Healthy"
elseif phase == "Progressing" then
  health.status = "Progressing"
elseif phase == "Paused" then
  -- Suspended is Argo CD's status for a resource waiting for a person (or a timer).
  health.status = "Suspended"
elseif phase == "Degraded" then
  health.status = "Degraded"
else
  health.status = "Unknown"
  health.message = "unknown Sluice phase " .. tostring(phase)
  return health
end
health.message = status.message
return health
