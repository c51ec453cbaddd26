package org.mobilelr.demo

import android.content.Context
import android.os.SystemClock
import android.util.Log
import androidx.work.Constraints
import androidx.work.Data
import androidx.work.ExistingWorkPolicy
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.Worker
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import org.mobilelr.core.Decision
import org.mobilelr.core.RecommendedSetup
import org.mobilelr.core.ScheduleManager
import org.mobilelr.core.SetupOptions
import org.mobilelr.core.StepMeter
import org.mobilelr.core.TrainingFiles
import org.mobilelr.core.ValidationError
import java.io.File
import java.util.Random
import java.util.concurrent.TimeUnit

/**
 * Fine-tuning in the background: a WorkManager [Worker] (runs on WorkManager's executor,
 * never on the main thread) that drives [OrtTrainer] with the core's [ScheduleManager].
 *
 * One worker run is one OS window. It verifies the bundle, restores the run (weights and
 * manager state, see [TrainingFiles]), tells the manager the window's length and the device
 * state, and then loops: `next()` -> Run: set that LR, train one step, `observe(loss, seconds)`
 * | Pause: save, enqueue the next run after the manager's resume hint, return | Stop: save,
 * export the model for inference, return | Rollback: reopen the session from the checkpoint
 * the manager names. The device state (BatteryManager, PowerManager) is read every few steps
 * and the run is committed every [CHECKPOINT_EVERY] steps, so a kill loses at most that much.
 *
 * Constraints: battery not low (the profile's `battery_not_low`), charging when the policy
 * says `charging_only`. The manager applies the finer limits (battery floor, thermal status).
 */
class TrainingWorker(context: Context, params: WorkerParameters) : Worker(context, params) {

    override fun doWork(): Result {
        val files = TrainingFiles(File(applicationContext.filesDir, "train"))
        return try {
            train(files)
        } catch (e: ValidationError) {
            files.writeStatus(null, null, "refused: ${e.message}")
            Log.e(TAG, "refused", e)
            Result.failure()
        } catch (e: Exception) {
            // Anything else (an OrtException, an I/O error, a bug) must still say why on the
            // screen: a FAILED work with no status looks like a hang.
            try {
                files.writeStatus(null, null, "error: ${e.javaClass.simpleName}: ${e.message}")
            } catch (ignored: Exception) {
            }
            Log.e(TAG, "training failed", e)
            Result.failure()
        }
    }

    private fun train(files: TrainingFiles): Result {
        val store = BundleStore(applicationContext)
        val generation = files.generation()  // a reset by the screen after this supersedes the run
        val bundle = store.open()
        val samples = SampleStore(applicationContext.filesDir).all()
        if (samples.size < MIN_SAMPLES) {
            files.writeStatus(null, null, "draw and label at least $MIN_SAMPLES digits first (${samples.size} so far)")
            return Result.success()
        }
        val profile = store.profile()
        val policy = store.policy()
        val reader = DeviceReader(applicationContext, profile)

        val resume = files.load()?.takeIf { it.bundleSha256 == bundle.sha256 }
        val manager = if (resume != null) {
            ScheduleManager.fromStateDict(resume.manager)
        } else {
            val nominal = EPOCHS * ((samples.size + BATCH - 1) / BATCH).toLong()
            // The recommended set-up for a battery-decided budget, from the bundle's base LR (the LR
            // of its manifest's optimizer). The ORT Java API (1.19) has no parameter buffer calls,
            // so the app can run neither its EMA nor schedule-free AdamW: it takes the EMA
            // flavour's schedule and config (warm-up, held peak raised for a short first plan, a
            // cool-down over the end of the budget in force) and trains the raw weights.
            val setup = RecommendedSetup.recommended("ort", bundle.manifest, store.schedule(bundle).baseLr, nominal,
                SetupOptions(averaging = "ema"))
            ScheduleManager(setup.parsedSchedule(), profile, policy, setup.config, reader.read().state)
        }
        OrtTrainer(bundle, resume?.checkpoint ?: bundle.file("checkpoint")).use { trainer ->
            val x = samples.map { it.x }.toTypedArray()
            val y = LongArray(samples.size) { samples[it].y.toLong() }
            val meter = StepMeter { SystemClock.elapsedRealtimeNanos() }
            /** False when the screen reset the run since this worker started: it must stop. */
            fun commit(): Boolean = meter.io {
                val accepted = manager.markCheckpoint()
                files.commit({ trainer.saveCheckpoint(it) }, accepted, manager, bundle.sha256, generation)
            }

            var reading = reader.read()
            manager.updateDevice(reading.state)
            val now = reading.state.timeS
            manager.beginWindow(now, Math.min(profile.windowFor(reading.state.charging), WORKER_WINDOW_S))
            var steps = 0
            while (!isStopped) {
                val decision = manager.next()
                meter.io { files.writeStatus(decision, manager, describe(decision)) }
                when (decision) {
                    is Decision.Run -> {
                        val (bx, by) = batch(x, y, decision)
                        val t0 = SystemClock.elapsedRealtimeNanos()
                        val loss = trainer.step(bx, by, decision.lr)
                        // The step's cost includes the I/O done for the steps (status, history,
                        // checkpoints): the battery and the window pay for it too.
                        val seconds = meter.stepSeconds(SystemClock.elapsedRealtimeNanos() - t0)
                        // Energy per step is not measured: BatteryManager's counters are far too
                        // coarse for a 10 ms step; the manager then uses the profile's power.
                        manager.observe(loss.toDouble(), seconds, null)
                        steps++
                        if (steps % READ_EVERY == 0) {
                            reading = reader.read()  // the headroom itself is asked at most once a second
                            manager.updateDevice(reading.state)
                        }
                        if (manager.schedule.isPlateau && decision.phase == "train" && manager.step % EVAL_EVERY == 0L) {
                            manager.observeEval(trainer.evaluate(x, y).first.toDouble())
                        }
                        val finite = !loss.isNaN() && !loss.isInfinite()
                        meter.io { files.appendHistory(linkedMapOf(
                            "t" to reading.state.timeS, "step" to decision.step, "phase" to decision.phase,
                            "lr" to decision.lr, "loss" to (if (finite) loss.toDouble() else null),
                            "level" to manager.device.level, "temperature_c" to manager.device.temperatureC,
                            "status" to manager.device.thermalStatus, "planned_total" to manager.plannedTotal)) }
                        if (steps % CHECKPOINT_EVERY == 0 && !commit()) return Result.success()  // superseded
                        if (steps % PROGRESS_EVERY == 0) setProgressAsync(progress(decision, loss, manager))
                    }
                    is Decision.Rollback -> {
                        val target = if (decision.toStep == 0L) trainer.initialCheckpoint else
                            files.load()?.goodCheckpoint ?: trainer.initialCheckpoint
                        trainer.reload(target)
                    }
                    is Decision.Pause -> {
                        if (!commit()) return Result.success()
                        trainer.exportForInference(files.inferenceModel)
                        val delay = (decision.resumeHint ?: DEFAULT_PAUSE_S).coerceIn(MIN_PAUSE_S, MAX_PAUSE_S)
                        enqueue(applicationContext, delay.toLong(), ExistingWorkPolicy.APPEND_OR_REPLACE, policy.chargingOnly)
                        return Result.success()
                    }
                    is Decision.Stop -> {
                        if (!commit()) return Result.success()
                        trainer.exportForInference(files.inferenceModel)
                        return Result.success()
                    }
                }
            }
            // Stopped by the OS (window over, constraint lost): save; WorkManager reschedules.
            return if (commit()) Result.retry() else Result.success()
        }
    }

    /** A batch drawn with replacement, seeded by the phase and step (a resumed run draws the same). */
    private fun batch(x: Array<FloatArray>, y: LongArray, d: Decision.Run): Pair<Array<FloatArray>, LongArray> {
        val rng = Random(d.step * 2L + (if (d.phase == "train") 0L else 1L))
        val n = Math.min(BATCH, x.size)
        val idx = IntArray(n) { rng.nextInt(x.size) }
        return Pair(Array(n) { x[idx[it]] }, LongArray(n) { y[idx[it]] })
    }

    private fun progress(d: Decision.Run, loss: Float, m: ScheduleManager): Data = workDataOf(
        "step" to d.step, "lr" to d.lr, "loss" to loss, "planned_total" to (m.plannedTotal ?: 0L),
        "level" to m.device.level)

    private fun describe(d: Decision): String = when (d) {
        is Decision.Run -> "training (${d.phase})"
        is Decision.Pause -> "paused: ${d.reason}"
        is Decision.Stop -> "stopped: ${d.reason}" + (if (d.detail.isNotEmpty()) " (${d.detail})" else "")
        is Decision.Rollback -> "rolled back to step ${d.toStep}: ${d.reason}"
    }

    companion object {
        const val TAG = "TrainingWorker"
        const val WORK_NAME = "fine-tune"
        const val MIN_SAMPLES = 10
        const val BATCH = 16
        const val EPOCHS = 30
        const val READ_EVERY = 5
        const val CHECKPOINT_EVERY = 25
        const val PROGRESS_EVERY = 5
        const val EVAL_EVERY = 20L
        /** A Worker is stopped after 10 minutes; the manager plans for a little less. */
        const val WORKER_WINDOW_S = 540.0
        const val DEFAULT_PAUSE_S = 900.0
        const val MIN_PAUSE_S = 30.0
        const val MAX_PAUSE_S = 6 * 3600.0

        /** Queue a training run (the UI uses REPLACE; a pausing worker appends its successor). */
        fun enqueue(context: Context, delaySeconds: Long, policy: ExistingWorkPolicy, chargingOnly: Boolean) {
            val constraints = Constraints.Builder()
                .setRequiresBatteryNotLow(true)
                .setRequiresCharging(chargingOnly)
                .build()
            val request = OneTimeWorkRequestBuilder<TrainingWorker>()
                .setConstraints(constraints)
                .setInitialDelay(delaySeconds, TimeUnit.SECONDS)
                .addTag(WORK_NAME)
                .build()
            WorkManager.getInstance(context).enqueueUniqueWork(WORK_NAME, policy, request)
        }

        fun cancel(context: Context) {
            WorkManager.getInstance(context).cancelUniqueWork(WORK_NAME)
        }
    }
}
