"""The lab side of a campaign: the instruments a test lab puts around a device under
test (power controllers, line capture, the sealed evidence bundle). Nothing here is
part of the reference meter; checks and the campaign may import it."""
