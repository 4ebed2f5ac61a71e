"""Push (DataNotification) reception: verify, decrypt, and watch the invocation counters.

A meter that reports by push sends DataNotification (0x0F) APDUs on its own, plain or
ciphered (general-glo-ciphering 0xDB carries the sender's system title, so each push is
self-describing). :mod:`~metercert.push.verify` checks each one against the key file
and the counters seen before from that meter; :mod:`~metercert.push.listener` receives
them over TCP or UDP (the IEC 62056-47 wrapper) and writes the fleet audit's records.
"""
