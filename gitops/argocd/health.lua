-- Argo CD health check for seatkeeper's kinds (Subscription, LicenseAssignment, AddOn,
-- Organization in seatkeeper.dev): Healthy when Ready, Degraded when Blocked (with the
-- reason and what to do), Suspended when paused, Progressing otherwise (not yet reconciled,
-- a purchase or a seat change in progress, users waiting for a seat).
local hs = { status = "Progressing", message = "waiting for seatkeeper to reconcile it" }
local annotations = (obj.metadata ~= nil and obj.metadata.annotations) or {}
if annotations["seatkeeper.dev/paused"] == "true" then
  hs.status = "Suspended"
  hs.message = "paused: seatkeeper.dev/paused is set, nothing is changed"
  return hs
end
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
-- A status written for an older generation says nothing about this one.
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration < generation then
  hs.message = "seatkeeper has not reconciled generation " .. tostring(generation) .. " yet"
  return hs
end
local ready, blocked
for _, c in ipairs(status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Blocked" then blocked = c end
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if blocked ~= nil and blocked.status == "True" then
  hs.status = "Degraded"
  hs.message = (blocked.reason or "Blocked") .. ": " .. (blocked.message or "")
  return hs
end
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
end
return hs
