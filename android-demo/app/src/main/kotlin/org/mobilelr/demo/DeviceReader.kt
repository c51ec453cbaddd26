package org.mobilelr.demo

import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.os.BatteryManager
import android.os.Build
import android.os.PowerManager
import android.os.SystemClock
import org.mobilelr.core.BatterySignals
import org.mobilelr.core.Device
import org.mobilelr.core.DeviceProfile
import org.mobilelr.core.DeviceState
import org.mobilelr.core.TemperatureSource
import org.mobilelr.core.ThermalStatus

/**
 * What the phone can tell the manager: battery level and charger from the sticky
 * `ACTION_BATTERY_CHANGED` broadcast (no receiver is registered, so nothing leaks; charging is
 * plugged *and* CHARGING/FULL, [BatterySignals.charging]), the thermal status from
 * `PowerManager.getCurrentThermalStatus()` (API 29+; its values are the core's 0..6), and a
 * skin-temperature estimate from `PowerManager.getThermalHeadroom()` (API 30+; 1.0 at the
 * SEVERE threshold, mapped by [Device.temperatureFromHeadroom]). The headroom is asked at most
 * once a second for the whole process (it returns NaN when asked more often) through one shared
 * [TemperatureSource], which keeps the last good value and falls back to the battery
 * temperature only when the headroom has been unavailable for 30 s.
 *
 * The ambient temperature is unknown on a phone: the state has `ambientC = null` and the
 * manager estimates it from how the temperature responds (AmbientEstimator).
 * Time is `SystemClock.elapsedRealtime()` (monotonic, counts deep sleep), in seconds.
 */
class DeviceReader(context: Context, private val profile: DeviceProfile) {
    private val app = context.applicationContext
    private val power = app.getSystemService(Context.POWER_SERVICE) as PowerManager

    /** A reading, with what it was derived from (for the screen). */
    data class Reading(val state: DeviceState, val headroom: Float?, val batteryTempC: Double?, val source: String)

    fun read(): Reading {
        val battery: Intent? = app.registerReceiver(null, IntentFilter(Intent.ACTION_BATTERY_CHANGED))
        val level = battery?.getIntExtra(BatteryManager.EXTRA_LEVEL, -1) ?: -1
        val scale = battery?.getIntExtra(BatteryManager.EXTRA_SCALE, -1) ?: -1
        val fraction = if (level >= 0 && scale > 0) (level.toDouble() / scale).coerceIn(0.0, 1.0) else 0.0
        val plugged = battery?.getIntExtra(BatteryManager.EXTRA_PLUGGED, 0) ?: 0
        val batteryStatus = battery?.getIntExtra(BatteryManager.EXTRA_STATUS, -1) ?: -1
        val charging = BatterySignals.charging(batteryStatus, plugged)
        val tenths = battery?.getIntExtra(BatteryManager.EXTRA_TEMPERATURE, Int.MIN_VALUE) ?: Int.MIN_VALUE
        val batteryTemp = if (tenths == Int.MIN_VALUE) null else tenths / 10.0

        val status = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            power.currentThermalStatus.coerceIn(ThermalStatus.NONE, ThermalStatus.SHUTDOWN)
        } else {
            ThermalStatus.NONE
        }
        val now = SystemClock.elapsedRealtime() / 1000.0
        // forecast 0 s = now; NaN when unsupported or called too often (>1/s)
        val ask: (() -> Double)? = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            { power.getThermalHeadroom(0).toDouble() }
        } else null
        val (temp, source, headroom) = temperatureSource(profile).read(now, ask, batteryTemp)
        val state = DeviceState(fraction, charging, temp.coerceIn(-100.0, 500.0), status, now, null)
        return Reading(state, headroom?.toFloat(), batteryTemp, source)
    }

    companion object {
        private var shared: TemperatureSource? = null
        private var sharedFor: DeviceProfile? = null

        /** One source per process (the worker and the screen share the once-a-second budget). */
        @Synchronized
        fun temperatureSource(profile: DeviceProfile): TemperatureSource {
            val s = shared
            if (s != null && sharedFor == profile) return s
            return TemperatureSource(profile).also { shared = it; sharedFor = profile }
        }
    }
}
