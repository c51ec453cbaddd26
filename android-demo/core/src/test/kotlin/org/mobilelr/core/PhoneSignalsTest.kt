package org.mobilelr.core

import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import java.io.File
import java.nio.file.Files

/** The app's phone-signal and run-file logic (moved into the core so the JVM can test it). */
class PhoneSignalsTest {
    private val trace = Golden.section("manager")[0]
    private val profile = DeviceProfile.fromJson(trace["profile"], "profile")
    private lateinit var dir: File

    @Before
    fun setUp() {
        dir = Files.createTempDirectory("train").toFile()
    }

    @After
    fun tearDown() {
        dir.deleteRecursively()
    }

    @Test
    fun pluggedIsNotChargingUnlessTheBatterySaysSo() {
        assertTrue(BatterySignals.charging(BatterySignals.STATUS_CHARGING, 1))
        assertTrue(BatterySignals.charging(BatterySignals.STATUS_FULL, 2))  // full on the charger: no drain
        assertFalse(BatterySignals.charging(BatterySignals.STATUS_NOT_CHARGING, 1))  // adaptive charging at 80 %
        assertFalse(BatterySignals.charging(BatterySignals.STATUS_DISCHARGING, 4))  // a weak USB port
        assertFalse(BatterySignals.charging(BatterySignals.STATUS_CHARGING, 0))
    }

    @Test
    fun theHeadroomIsAskedAtMostOnceASecondAndNaNKeepsTheLastValue() {
        val src = TemperatureSource(profile)
        var answer = 0.5
        val ask = { answer }
        val (t0, s0, h0) = src.read(100.0, ask, 30.0)
        assertEquals("thermal headroom", s0)
        assertEquals(0.5, h0!!, 0.0)
        for (i in 1..50) src.read(100.0 + i * 0.01, ask, 30.0)  // a worker reading every 10 ms
        assertEquals(1, src.asked)
        answer = Double.NaN  // throttled, or the sensor hiccups
        val (t1, s1, _) = src.read(101.5, ask, 30.0)
        assertEquals(2, src.asked)
        assertEquals("thermal headroom", s1)  // no flip to the battery sensor
        assertEquals(t0, t1, 0.0)
        val (_, s2, _) = src.read(101.5 + 31.0, ask, 30.0)  // no good headroom for 30 s
        assertEquals("battery temperature", s2)
        answer = 0.6
        val (_, s3, h3) = src.read(140.0, ask, 30.0)
        assertEquals("thermal headroom", s3)
        assertEquals(0.6, h3!!, 0.0)
        val (t4, s4, h4) = TemperatureSource(profile).read(1.0, null, null)  // before API 30, no battery
        assertEquals("profile ambient", s4)
        assertNull(h4)
        assertEquals(profile.ambientC, t4, 0.0)
    }

    @Test
    fun aStepCostsItsTrainingAndTheIoDoneForIt() {
        var now = 0L
        val meter = StepMeter { now }
        meter.io { now += 3_000_000L }  // status write, 3 ms
        meter.io { now += 2_000_000L }  // history append
        assertEquals(0.015, meter.stepSeconds(10_000_000L), 1e-12)
        assertEquals(0.010, meter.stepSeconds(10_000_000L), 1e-12)  // counted once
    }

    private fun manager(): ScheduleManager = ScheduleManager(ScheduleSpec.parse(trace["spec"]), profile,
        Policy.fromJson(trace["policy"], "policy"), ManagerConfig.fromJson(trace["config"]),
        DeviceState.fromJson(trace["state"]))

    @Test
    fun aResetSupersedesAWorkerStillHoldingTheOldRun() {
        val worker = TrainingFiles(dir)
        val screen = TrainingFiles(dir)  // another instance on the same directory: the same lock
        val generation = worker.generation()
        assertTrue(worker.commit({ it.writeBytes(byteArrayOf(1, 2, 3)) }, true, manager(), "sha", generation))
        val resume = screen.load()!!
        assertEquals("sha", resume.bundleSha256)
        assertTrue(resume.checkpoint.readBytes().contentEquals(byteArrayOf(1, 2, 3)))
        assertTrue(resume.goodCheckpoint!!.isFile)
        screen.reset()  // the user taps Train after a finished run
        assertFalse(worker.commit({ it.writeBytes(byteArrayOf(9)) }, true, manager(), "sha", generation))
        assertNull(screen.load())  // the old worker wrote nothing back
        assertTrue(worker.commit({ it.writeBytes(byteArrayOf(4)) }, false, manager(), "sha", screen.generation()))
        assertNull(screen.load()!!.goodCheckpoint)  // not accepted, and the reset dropped the old target
    }

    @Test
    fun anInterruptedSwapIsUndone() {
        val files = TrainingFiles(dir)
        assertTrue(files.commit({ it.writeBytes(byteArrayOf(1)) }, true, manager(), "sha", files.generation()))
        // a kill between the two renames: current moved to old, next not yet in place
        assertTrue(File(dir, "current").renameTo(File(dir, "old")))
        File(dir, "next").mkdirs()
        File(dir, "next/checkpoint").writeBytes(byteArrayOf(7))
        val resume = files.load()!!
        assertTrue(resume.checkpoint.readBytes().contentEquals(byteArrayOf(1)))
        assertFalse(File(dir, "next").exists() || File(dir, "old").exists())
    }
}
