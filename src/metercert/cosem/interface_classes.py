"""COSEM interface classes the project uses: class ids, attribute and method indices,
and the logical names of the objects the checks address (Blue Book / STANDARDS.md).

Attribute 1 of every class is ``logical_name``.
"""

from __future__ import annotations

from enum import IntEnum

from metercert.cosem.obis import ObisCode


class ClassId(IntEnum):
    DATA = 1
    REGISTER = 3
    PROFILE_GENERIC = 7
    CLOCK = 8
    ASSOCIATION_LN = 15
    IMAGE_TRANSFER = 18
    SECURITY_SETUP = 64
    DISCONNECT_CONTROL = 70


LOGICAL_NAME = 1


class DataAttr(IntEnum):
    LOGICAL_NAME = 1
    VALUE = 2


class RegisterAttr(IntEnum):
    LOGICAL_NAME = 1
    VALUE = 2
    SCALER_UNIT = 3


class RegisterMethod(IntEnum):
    RESET = 1


class ProfileGenericAttr(IntEnum):
    LOGICAL_NAME = 1
    BUFFER = 2
    CAPTURE_OBJECTS = 3
    CAPTURE_PERIOD = 4
    SORT_METHOD = 5
    SORT_OBJECT = 6
    ENTRIES_IN_USE = 7
    PROFILE_ENTRIES = 8


class ProfileGenericMethod(IntEnum):
    RESET = 1
    CAPTURE = 2


class ClockAttr(IntEnum):
    LOGICAL_NAME = 1
    TIME = 2
    TIME_ZONE = 3
    STATUS = 4
    DAYLIGHT_SAVINGS_BEGIN = 5
    DAYLIGHT_SAVINGS_END = 6
    DAYLIGHT_SAVINGS_DEVIATION = 7
    DAYLIGHT_SAVINGS_ENABLED = 8
    CLOCK_BASE = 9


class AssociationLnAttr(IntEnum):
    LOGICAL_NAME = 1
    OBJECT_LIST = 2
    ASSOCIATED_PARTNERS_ID = 3
    APPLICATION_CONTEXT_NAME = 4
    XDLMS_CONTEXT_INFO = 5
    AUTHENTICATION_MECHANISM_NAME = 6
    SECRET = 7  # never readable
    ASSOCIATION_STATUS = 8
    SECURITY_SETUP_REFERENCE = 9


class AssociationLnMethod(IntEnum):
    REPLY_TO_HLS_AUTHENTICATION = 1
    CHANGE_HLS_SECRET = 2


class ImageTransferAttr(IntEnum):
    LOGICAL_NAME = 1
    IMAGE_BLOCK_SIZE = 2
    IMAGE_TRANSFERRED_BLOCKS_STATUS = 3
    IMAGE_FIRST_NOT_TRANSFERRED_BLOCK_NUMBER = 4
    IMAGE_TRANSFER_ENABLED = 5
    IMAGE_TRANSFER_STATUS = 6
    IMAGE_TO_ACTIVATE_INFO = 7


class ImageTransferMethod(IntEnum):
    IMAGE_TRANSFER_INITIATE = 1
    IMAGE_BLOCK_TRANSFER = 2
    IMAGE_VERIFY = 3
    IMAGE_ACTIVATE = 4


class ImageTransferStatus(IntEnum):
    NOT_INITIATED = 0
    TRANSFER_INITIATED = 1
    VERIFICATION_INITIATED = 2
    VERIFICATION_SUCCESSFUL = 3
    VERIFICATION_FAILED = 4
    ACTIVATION_INITIATED = 5
    ACTIVATION_SUCCESSFUL = 6
    ACTIVATION_FAILED = 7


class SecuritySetupAttr(IntEnum):
    LOGICAL_NAME = 1
    SECURITY_POLICY = 2
    SECURITY_SUITE = 3
    CLIENT_SYSTEM_TITLE = 4
    SERVER_SYSTEM_TITLE = 5
    CERTIFICATES = 6  # version 1 only


class SecuritySetupMethod(IntEnum):
    SECURITY_ACTIVATE = 1
    KEY_TRANSFER = 2  # global_key_transfer in version 0
    KEY_AGREEMENT = 3
    GENERATE_KEY_PAIR = 4
    GENERATE_CERTIFICATE_REQUEST = 5
    IMPORT_CERTIFICATE = 6
    EXPORT_CERTIFICATE = 7
    REMOVE_CERTIFICATE = 8


class KeyId(IntEnum):
    """key_id in Security Setup key_transfer."""

    GLOBAL_UNICAST_ENCRYPTION_KEY = 0
    GLOBAL_BROADCAST_ENCRYPTION_KEY = 1
    AUTHENTICATION_KEY = 2
    MASTER_KEY = 3  # the KEK


class SecurityPolicyV0(IntEnum):
    NONE = 0
    AUTHENTICATED = 1
    ENCRYPTED = 2
    AUTHENTICATED_AND_ENCRYPTED = 3


class SecurityPolicyV1:
    """Bits of the version-1 security_policy bitmap."""

    AUTHENTICATED_REQUEST = 0x04
    ENCRYPTED_REQUEST = 0x08
    DIGITALLY_SIGNED_REQUEST = 0x10
    AUTHENTICATED_RESPONSE = 0x20
    ENCRYPTED_RESPONSE = 0x40
    DIGITALLY_SIGNED_RESPONSE = 0x80


class DisconnectControlAttr(IntEnum):
    LOGICAL_NAME = 1
    OUTPUT_STATE = 2
    CONTROL_STATE = 3
    CONTROL_MODE = 4


class DisconnectControlMethod(IntEnum):
    REMOTE_DISCONNECT = 1
    REMOTE_RECONNECT = 2


# Logical names of the objects the project addresses.
CLOCK = ObisCode(0, 0, 1, 0, 0, 255)
CURRENT_ASSOCIATION = ObisCode(0, 0, 40, 0, 0, 255)
SECURITY_SETUP = ObisCode(0, 0, 43, 0, 0, 255)
IMAGE_TRANSFER = ObisCode(0, 0, 44, 0, 0, 255)
DISCONNECT_CONTROL = ObisCode(0, 0, 96, 3, 10, 255)


def association_ln(e: int) -> ObisCode:
    """Association LN instance 0.0.40.0.e.255 (e = 0 is the current association)."""
    return ObisCode(0, 0, 40, 0, e, 255)


def security_setup(e: int) -> ObisCode:
    return ObisCode(0, 0, 43, 0, e, 255)


def invocation_counter(e: int) -> ObisCode:
    """Data object holding a frame counter, 0.0.43.1.e.255."""
    return ObisCode(0, 0, 43, 1, e, 255)


def security_event_log(x: int) -> ObisCode:
    """Profile generic 0.0.99.98.x.255."""
    return ObisCode(0, 0, 99, 98, x, 255)
