"""libvirt_volume through ansible against qemu:///system: create, grow, upload, bad input."""
import functools
import hashlib
import http.server
import os
import subprocess
import threading

import pytest
from stor_common import assert_fails_cleanly, four_runs, lv_fixture, run_module  # noqa: F401

pytestmark = pytest.mark.system
POOL = "ctest-stor-int-vpool"
VOL = "ctest-stor-int-vol.qcow2"


@pytest.fixture(name="pool")
def pool_fixture(lv):
    result = run_module("libvirt_pool", {"name": POOL, "path": os.path.join(lv.workdir, "pool")})
    assert not result["failed"], result.get("msg")
    return lv.storagePoolLookupByName(POOL)


def image(lv) -> tuple:
    path = os.path.join(lv.workdir, "src.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    with open(path, "rb") as handle:
        return path, "sha256:" + hashlib.sha256(handle.read()).hexdigest()


def test_create_then_grow_four_times(pool):
    args = {"pool": POOL, "name": VOL, "capacity": "16MiB"}
    four_runs("libvirt_volume", args, via_ansible=True)
    assert pool.storageVolLookupByName(VOL).info()[1] == 16 * 1024 ** 2
    grown = four_runs("libvirt_volume", dict(args, capacity="32M"))
    assert grown["volume"]["capacity"] == pool.storageVolLookupByName(VOL).info()[1] == 32 * 1024 ** 2


def test_drift_resized_behind_our_back_is_grown_back(pool):
    args = {"pool": POOL, "name": VOL, "capacity": "16MiB"}
    run_module("libvirt_volume", args)
    subprocess.run(["virsh", "-c", "qemu:///system", "vol-resize", VOL, "8M", "--pool", POOL, "--shrink"],
                   check=True, capture_output=True)
    assert run_module("libvirt_volume", args)["actions"] == ["resize"]
    assert pool.storageVolLookupByName(VOL).info()[1] == 16 * 1024 ** 2


@pytest.mark.parametrize("over, words", [
    ({"capacity": "16XB"}, ["unknown size unit", VOL]),
    ({"capacity": "8MiB"}, ["allow_shrink", VOL]),
    ({"pool": "ctest-stor-int-nopool"}, ["ctest-stor-int-nopool", "not found"]),
    ({"xml": "<volume><name>"}, ["malformed XML"]),
])
def test_bad_input_changes_nothing(pool, over, words):
    run_module("libvirt_volume", {"pool": POOL, "name": VOL, "capacity": "16MiB"})
    args = {"pool": POOL, "name": VOL, "capacity": "16MiB", **over}
    if "xml" in over:
        args.pop("capacity")
    assert_fails_cleanly(run_module("libvirt_volume", args), *words)
    assert pool.storageVolLookupByName(VOL).info()[1] == 16 * 1024 ** 2


def test_upload_from_local_file_four_times(lv, pool):
    path, checksum = image(lv)
    result = four_runs("libvirt_volume", {"pool": POOL, "name": VOL, "source": path, "checksum": checksum,
                                          "capacity": "128MiB"})
    vol = pool.storageVolLookupByName(VOL)
    assert result["volume"]["format"] == "qcow2" and vol.info()[1] == 128 * 1024 ** 2
    info = subprocess.run(["qemu-img", "info", "--output=json", vol.path()], check=True, capture_output=True,
                          text=True).stdout
    assert '"format": "qcow2"' in info


def test_bad_checksum_creates_nothing(lv, pool):
    path, _ = image(lv)
    result = run_module("libvirt_volume", {"pool": POOL, "name": VOL, "source": path, "checksum": "sha256:" + "0" * 64})
    assert_fails_cleanly(result, "checksum mismatch")
    assert VOL not in pool.listVolumes()


def test_upload_from_loopback_url(lv, pool):
    path, checksum = image(lv)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=lv.workdir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/src.qcow2"
        result = run_module("libvirt_volume", {"pool": POOL, "name": VOL, "source": url, "checksum": checksum})
    finally:
        server.shutdown()
        server.server_close()
    assert not result["failed"], result.get("msg")
    assert result["volume"]["capacity"] == 64 * 1024 ** 2 and VOL in pool.listVolumes()


def test_iso_uploaded_as_raw_settles_four_times(lv, pool):
    """An ISO 9660 image asked for as raw: libvirt's probe reports it as "iso" after the upload. The upload
    must not wait for "raw" (it failed after 60 s) and the rerun must not call iso a different format."""
    path = os.path.join(lv.workdir, "src.iso")
    tree = os.path.join(lv.workdir, "isotree")
    os.makedirs(tree, exist_ok=True)
    with open(os.path.join(tree, "hello.txt"), "w", encoding="utf-8") as handle:
        handle.write("hello\n")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", path, tree], check=True, capture_output=True)
    with open(path, "rb") as handle:
        checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    name = "ctest-stor-int-vol.iso"
    result = four_runs("libvirt_volume", {"pool": POOL, "name": name, "source": path, "checksum": checksum,
                                          "format": "raw"})
    assert result["volume"]["format"] == "iso"
    assert pool.storageVolLookupByName(name).info()[1] == os.path.getsize(path)
