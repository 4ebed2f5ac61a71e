"""Image transfer (class 18) values both sides of a firmware update need.

``image_transfer_status`` (attribute 6) is an enumeration defined by the Blue Book;
a client polls it while a meter verifies or activates an image in the background.
"""

from __future__ import annotations

import enum

from metercert.cosem.obis import ObisCode

#: the usual logical name of the Image transfer object (a meter may use another)
IMAGE_TRANSFER_OBIS = ObisCode(0, 0, 44, 0, 0, 255)


class ImageTransferStatus(enum.IntEnum):
    NOT_INITIATED = 0
    INITIATED = 1
    VERIFY_INITIATED = 2
    VERIFIED = 3
    VERIFY_FAILED = 4
    ACTIVATION_INITIATED = 5
    ACTIVATED = 6
    ACTIVATION_FAILED = 7
