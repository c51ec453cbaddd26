"""Device model: closed-form RC thermal path, throttling, CC-CV charging, energy balance,
the same model on arrays of phones, and the validation of profiles and states.

Numbers come from docs/DEVICES.md: the RC closed form and the calibration
table of §5.2, the VIRTUAL-SKIN thresholds of §2.5, the CC-CV taper of §2.4.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mobile_lr import physics
from mobile_lr.device import (
    BUILTIN_PROFILES,
    DeviceProfile,
    DeviceState,
    SimulatedDevice,
    ThermalStatus,
    advance,
    cool_down_seconds,
    load_profile,
    parse_thermal_status,
    temperature_from_headroom,
)
from mobile_lr.physics import ARRAY
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core


def closed_form(t, p, r, c, amb, t0):
    tau = r * c
    return amb + p * r * (1 - math.exp(-t / tau)) + (t0 - amb) * math.exp(-t / tau)


@pytest.fixture(params=BUILTIN_PROFILES)
def profile(request) -> DeviceProfile:
    return load_profile(request.param)


def test_thermal_status_has_the_aosp_values():
    # docs/DEVICES.md §1.2: THERMAL_STATUS_NONE=0 .. SHUTDOWN=6
    assert [int(s) for s in ThermalStatus] == list(range(7))
    assert [s.name for s in ThermalStatus] == ["NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL",
                                               "EMERGENCY", "SHUTDOWN"]
    assert parse_thermal_status("moderate") is ThermalStatus.MODERATE
    assert parse_thermal_status(3) is ThermalStatus.SEVERE


def test_heating_follows_the_closed_form(profile):
    """Idle-free heating at constant load matches T(t) over one long interval and many short ones."""
    start = DeviceState(0.9, False, 25.0, ThermalStatus.NONE, ambient_c=25.0)
    load = profile.train_power_w
    r, c = profile.thermal_resistance_k_per_w, profile.heat_capacity_j_per_k
    for t in (1.0, 60.0, 300.0, 1200.0):
        one, _ = advance(profile, start, load, t)
        assert one.temperature_c == pytest.approx(closed_form(t, load, r, c, 25.0, 25.0), rel=1e-12)
    # the closed form composes: 100 intervals of 6 s == one of 600 s
    s = start
    for _ in range(100):
        s, _ = advance(profile, s, load, 6.0)
    assert s.temperature_c == pytest.approx(closed_form(600.0, load, r, c, 25.0, 25.0), rel=1e-12)


def test_cooling_follows_the_closed_form(profile):
    hot = DeviceState(0.5, False, 46.0, profile.status_for(46.0), ambient_c=20.0)
    cooled, _ = advance(profile, hot, 0.0, 400.0)
    r, c = profile.thermal_resistance_k_per_w, profile.heat_capacity_j_per_k
    assert cooled.temperature_c == pytest.approx(closed_form(400.0, 0.0, r, c, 20.0, 46.0), rel=1e-12)
    assert cooled.temperature_c < hot.temperature_c


def test_flagship_reaches_light_when_the_calibration_says():
    """docs/DEVICES.md §5.2: t* = -τ·ln(1 - ΔT/(P·R)); flagship 8 W, R 3.5, C 100 → LIGHT (39 °C) at 243 s."""
    p = load_profile("flagship")
    dev = SimulatedDevice(p, DeviceState(0.9, False, 25.0, ThermalStatus.NONE, ambient_c=25.0))
    expected = -p.tau_s * math.log(1 - 14.0 / (p.train_power_w * p.thermal_resistance_k_per_w))
    while dev.state.thermal_status == ThermalStatus.NONE:
        dev.train_step(work_s=1.0)
    assert abs(dev.state.time_s - expected) <= 1.0
    # the low-end phone never throttles at its own peak (ΔT_ss = 2 W · 3.5 K/W = 7 K)
    low = load_profile("low-end")
    dev = SimulatedDevice(low, DeviceState(0.9, False, 25.0, ThermalStatus.NONE, ambient_c=25.0))
    dev.train_step(work_s=20000.0)
    assert dev.state.thermal_status == ThermalStatus.NONE
    assert dev.state.temperature_c == pytest.approx(25.0 + 2.0 * 3.5, abs=1e-6)


def test_throttling_lengthens_steps_and_keeps_dynamic_energy():
    p = load_profile("flagship")
    cool = SimulatedDevice(p, DeviceState(0.9, False, 30.0, ThermalStatus.NONE))
    hot = SimulatedDevice(p, DeviceState(0.9, False, 44.0, ThermalStatus.MODERATE))
    a, b = cool.train_step(1.0), hot.train_step(1.0)
    assert a.seconds == pytest.approx(1.0)
    assert b.seconds == pytest.approx(1.0 / 0.75)  # MODERATE throughput 0.75 (§5.3 a)
    dyn = (p.train_power_w - p.idle_power_w) * 1.0
    assert a.energy_j == pytest.approx(dyn + p.idle_power_w * 1.0)
    assert b.energy_j == pytest.approx(dyn + p.idle_power_w / 0.75)  # only the idle part grows
    assert b.energy_j > a.energy_j


def test_status_hysteresis():
    p = load_profile("mid-range")
    assert p.status_for(38.9) == ThermalStatus.NONE
    assert p.status_for(39.0) == ThermalStatus.LIGHT
    assert p.status_for(45.0) == ThermalStatus.SEVERE
    # coming down: stays until below threshold - 1.9 °C (§2.5)
    assert p.status_for(37.2, ThermalStatus.LIGHT) == ThermalStatus.LIGHT
    assert p.status_for(37.0, ThermalStatus.LIGHT) == ThermalStatus.NONE
    assert p.status_for(42.0, ThermalStatus.MODERATE) == ThermalStatus.MODERATE
    assert p.status_for(40.0, ThermalStatus.MODERATE) == ThermalStatus.LIGHT


def test_charging_is_cc_then_cv_taper(profile):
    eta, e = profile.charge_efficiency, profile.battery_j
    start = DeviceState(0.2, True, 25.0, ThermalStatus.NONE, ambient_c=25.0)
    net = eta * profile.charge_power_w - profile.idle_power_w
    # CC: linear up to the point where the acceptance limit takes over
    s, _ = advance(profile, start, profile.idle_power_w, 300.0)
    assert s.level == pytest.approx(0.2 + net * 300.0 / e, rel=1e-12)
    # reaching full takes longer above the knee than a straight line would
    t_line = (1.0 - 0.2) * e / net
    s, _ = advance(profile, start, profile.idle_power_w, t_line)
    assert profile.cv_knee < s.level < 1.0
    s, _ = advance(profile, start, profile.idle_power_w, 10 * t_line)
    assert s.level == 1.0
    # the taper: above the knee the level follows knee + k·ln(v0 + a·t/(k·E))
    knee, k = profile.cv_knee, profile.cv_taper
    a = eta * profile.charge_power_w
    up = DeviceState(0.95, True, 25.0, ThermalStatus.NONE, ambient_c=25.0)
    s, _ = advance(profile, up, 0.0, 120.0)
    v0 = math.exp((0.95 - knee) / k)
    assert s.level == pytest.approx(knee + k * math.log(v0 + a * 120.0 / (k * e)), rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(level=st.floats(0.0, 1.0), charging=st.booleans(), temp=st.floats(10.0, 60.0),
       load=st.floats(0.0, 40.0), dt=st.floats(0.0, 20000.0),
       name=st.sampled_from(BUILTIN_PROFILES), charge_w=st.floats(0.0, 60.0))
# a charger output that underflows to 0 in the CV taper (was a ZeroDivisionError)
@example(level=0.875, charging=True, temp=30.0, load=0.0, dt=10.0, name="low-end", charge_w=5e-324)
def test_energy_balances_exactly(level, charging, temp, load, dt, name, charge_w):
    """battery change == η·charger energy - consumed energy, on every kind of interval."""
    p = replace(load_profile(name), charge_power_w=charge_w)
    s0 = DeviceState(level, charging, temp, p.status_for(temp))
    s1, led = advance(p, s0, load, dt)
    scale = max(1.0, abs(led.consumed_j), abs(led.charger_in_j))
    assert led.battery_j == pytest.approx(p.charge_efficiency * led.charger_in_j - led.consumed_j,
                                          abs=1e-9 * scale)
    assert led.battery_j == pytest.approx((s1.level - s0.level) * p.battery_j, abs=1e-9 * scale)
    assert 0.0 <= s1.level <= 1.0 and math.isfinite(s1.temperature_c)
    if not charging and level > 0 and load * dt < level * p.battery_j:
        assert led.consumed_j == pytest.approx(load * dt, rel=1e-12)  # ∫P dt


def test_simulator_ledger_sums_intervals():
    p = load_profile("mid-range")
    dev = SimulatedDevice(p, DeviceState.initial(p, 0.6))
    total = 0.0
    for _ in range(50):
        total += dev.train_step(2.0).energy_j
    dev.idle(100.0)
    total += p.idle_power_w * 100.0
    assert dev.ledger.consumed_j == pytest.approx(total, rel=1e-12)
    assert dev.state.level == pytest.approx(0.6 - total / p.battery_j, rel=1e-12)


def test_empty_battery_switches_the_phone_off():
    p = load_profile("low-end")
    s, led = advance(p, DeviceState(0.001, False, 30.0, ThermalStatus.NONE), 2.0, 10000.0)
    assert s.level == 0.0
    assert led.consumed_j == pytest.approx(0.001 * p.battery_j)
    assert s.temperature_c < 30.0  # off for most of the interval: it cooled


def test_cool_down_seconds_is_the_inverse_of_the_closed_form():
    p = load_profile("flagship")
    hot = DeviceState(0.5, False, 46.0, ThermalStatus.CRITICAL, ambient_c=25.0)
    t = cool_down_seconds(p, hot, 40.0)
    s, _ = advance(p, hot, p.idle_power_w, t)
    assert s.temperature_c == pytest.approx(40.0, abs=1e-9)
    assert cool_down_seconds(p, hot, 20.0) == math.inf  # below ambient: never
    assert temperature_from_headroom(p, 1.0) == p.threshold(ThermalStatus.SEVERE)


def test_the_array_model_is_the_scalar_model_on_many_phones():
    """mobile_lr.physics on numpy arrays (the budget simulation of many phones) follows the
    same phones as SimulatedDevice, step by throttled step and through rests."""
    p = load_profile("flagship")
    c = p.physics
    rng = np.random.default_rng(0)
    n = 40
    levels = rng.uniform(0.05, 1.0, n)
    charging = rng.random(n) < 0.5
    temps = rng.uniform(20.0, 44.0, n)
    status = physics.status_for(ARRAY, c, temps, np.zeros(n, int))
    singles = [SimulatedDevice(p, DeviceState(float(levels[i]), bool(charging[i]),
                                              float(temps[i]), p.status_for(float(temps[i]))))
               for i in range(n)]
    assert list(status) == [int(d.state.thermal_status) for d in singles]
    amb = np.full(n, p.ambient_c)
    e_full = np.full(n, p.battery_j)
    for k in range(200):
        m = np.asarray(p.throughput)[status]
        phones = physics.Phone(levels, charging, temps, status, amb, e_full)
        levels, temps, status, _, _ = physics.advance(ARRAY, c, phones, p.load_power(m),
                                                      2.0 / m)
        for d in singles:
            d.train_step(2.0)
        if k % 50 == 49:
            phones = physics.Phone(levels, charging, temps, status, amb, e_full)
            levels, temps, status, _, _ = physics.advance(ARRAY, c, phones, p.idle_power_w,
                                                          300.0)
            for d in singles:
                d.idle(300.0)
    np.testing.assert_allclose(levels, [d.state.level for d in singles], rtol=1e-9)
    np.testing.assert_allclose(temps, [d.state.temperature_c for d in singles], rtol=1e-9)
    assert list(status) == [int(d.state.thermal_status) for d in singles]
    assert len(set(status.tolist())) > 1  # the phones span several statuses


# ----------------------------------------------------------------------------- profiles


def test_builtin_profiles_cite_a_source_for_every_number(profile):
    data = profile.to_dict()
    raw = json.loads((__import__("importlib.resources").resources.files("mobile_lr")
                      / "data" / "profiles" / f"{profile.name}.json").read_text())
    numbers = [f"{group}.{key}" for group, body in raw.items() if isinstance(body, dict)
               and group != "sources" for key, v in body.items()
               if isinstance(v, int | float | dict | bool)]
    for field in numbers:
        assert field in raw["sources"], f"{profile.name}: no source for {field}"
        assert any(tag in raw["sources"][field] for tag in ("[S]", "[D]", "[A]"))
        assert "docs/DEVICES.md §" in raw["sources"][field]
    assert DeviceProfile.from_dict(data) == profile  # round trip


def test_profile_numbers_are_the_reference_ones():
    # docs/DEVICES.md §6 / §2.1: battery Wh; §6: R_sa and C_eff; §1.4-1.5: windows
    low, mid, top = (load_profile(n) for n in BUILTIN_PROFILES)
    assert low.battery_wh == pytest.approx(19.35) and mid.battery_wh == pytest.approx(17.07, abs=0.01)
    assert top.battery_wh == pytest.approx(18.84, abs=0.01)
    assert (mid.thermal_resistance_k_per_w, mid.heat_capacity_j_per_k) == (4.0, 150.0)
    assert (low.window_s, low.window_charging_s) == (600.0, 1800.0)
    assert low.thresholds_c == (39.0, 43.0, 45.0, 47.0, 52.0, 55.0)
    assert min(top.throughput) == 0.45 and min(mid.throughput) == 0.75


def test_profile_from_toml(tmp_path):
    path = tmp_path / "phone.toml"
    path.write_text("""
name = "tiny"
[battery]
capacity_mah = 3000
nominal_voltage = 3.85
[power]
idle_w = 0.1
train_w = 2.5
[charging]
power_w = 10
[thermal]
resistance_k_per_w = 4.0
capacity_j_per_k = 120
ambient_c = 30
[compute]
step_seconds = 0.2
""")
    p = load_profile(path)
    assert p.name == "tiny" and p.battery_wh == pytest.approx(11.55)
    assert p.thresholds_c[0] == 39.0 and p.window_s == 600.0


def _base() -> dict:
    return load_profile("mid-range").to_dict()


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["battery"].update(capacity_wh=-5.0), "battery.capacity_wh"),
    (lambda d: d["battery"].update(capacity_wh=float("nan")), "battery.capacity_wh"),
    (lambda d: d["battery"].pop("capacity_wh"), "battery.capacity_wh"),
    (lambda d: d["power"].update(train_w=0.01), "power.train_w"),
    (lambda d: d["charging"].update(efficiency=1.5), "charging.efficiency"),
    (lambda d: d["thermal"].update(resistance_k_per_w=0), "thermal.resistance_k_per_w"),
    (lambda d: d["thermal"]["thresholds_c"].update(MODERATE=50.0), "thermal.thresholds_c.SEVERE"),
    (lambda d: d["thermal"]["thresholds_c"].update(WARM=41.0), "thermal.thresholds_c.WARM"),
    (lambda d: d["thermal"]["throughput"].update(SEVERE=0.9), "thermal.throughput.SEVERE"),
    (lambda d: d["compute"].update(step_seconds=-1), "compute.step_seconds"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d.update(format="mobile-lr.device/9"), "format"),
])
def test_invalid_profiles_name_the_field(mutate, field):
    d = _base()
    mutate(d)
    with pytest.raises(ValidationError) as err:
        DeviceProfile.from_dict(d)
    assert err.value.field == field


def test_negative_mah_and_unknown_names_are_refused(tmp_path):
    d = _base()
    d["battery"] = {"capacity_mah": -4410, "nominal_voltage": 3.87}
    with pytest.raises(ValidationError, match=r"battery\.capacity_mah"):
        load_profile(d)
    with pytest.raises(ValidationError, match=r"unknown profile 'potato'.*low-end"):
        load_profile("potato")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        load_profile(bad)


def test_invalid_states_are_refused():
    with pytest.raises(ValidationError, match="level"):
        DeviceState(1.2, False, 25.0, ThermalStatus.NONE)
    with pytest.raises(ValidationError, match=r"thermal_status.*unknown thermal status 'HOT'"):
        DeviceState.from_dict({"level": 0.5, "charging": False, "temperature_c": 30,
                               "thermal_status": "HOT"})
    with pytest.raises(ValidationError, match="thermal_status"):
        DeviceState(0.5, False, 25.0, 9)
    s = DeviceState(0.5, True, 31.0, ThermalStatus.LIGHT, 12.0, 22.0)
    assert DeviceState.from_dict(s.to_dict()) == s
