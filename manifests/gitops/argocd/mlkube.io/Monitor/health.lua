-- Argo CD health of an mlkube Monitor, read from the operator's kstatus conditions:
-- no status, a stale observedGeneration or Reconciling=True is Progressing, then Stalled=True is
-- Degraded, Ready=True is Healthy (also when the data drifted: drift is a finding of a
-- working Monitor, shown in the message, and retraining follows from it), anything else
-- Progressing. The same verdicts as kstatus and the Flux expressions (tested).
local hs = {}
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end
local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the Monitor"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = text(reconciling, reconciling.reason)
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, stalled.reason)
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if obj.status.verdict ~= nil then
    hs.message = "Last check: " .. obj.status.verdict
    if obj.status.driftShare ~= nil then
      hs.message = hs.message .. string.format(" (drift share %.2f)", obj.status.driftShare)
    end
  else
    hs.message = text(ready, "Ready")
  end
  return hs
end
hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
