import pytest

from metercert.security import Key


@pytest.fixture
def ek() -> Key:
    return Key(bytes.fromhex("000102030405060708090A0B0C0D0E0F"), "guek")


@pytest.fixture
def ak() -> Key:
    return Key(bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"), "ak")
