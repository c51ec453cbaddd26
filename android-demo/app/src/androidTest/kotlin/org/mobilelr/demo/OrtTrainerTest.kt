package org.mobilelr.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.mobilelr.core.Decision
import org.mobilelr.core.ManagerConfig
import org.mobilelr.core.ScheduleManager
import java.io.File

/**
 * On a device or emulator (`./gradlew :app:connectedAndroidTest`, after copy_bundle.sh):
 * the bundle from the assets verifies, ORT's training session opens on it, steps driven by
 * the core manager lower the loss on a fixed batch, and a checkpoint saved and reopened
 * gives the same eval loss. Not run on the development machine (no device there).
 */
@RunWith(AndroidJUnit4::class)
class OrtTrainerTest {
    private val context = InstrumentationRegistry.getInstrumentation().targetContext

    /** A fixed batch: ten strokes-like patterns, one per class (not real digits, just separable). */
    private fun batch(): Pair<Array<FloatArray>, LongArray> {
        val x = Array(10) { c -> FloatArray(64) { i -> if ((i * 7 + c * 13) % 10 < 3) 1f else 0f } }
        return Pair(x, LongArray(10) { it.toLong() })
    }

    @Test
    fun trainsUnderTheManagerAndResumesFromACheckpoint() {
        val store = BundleStore(context)
        val bundle = store.open()
        val (x, y) = batch()
        val manager = ScheduleManager(store.schedule(bundle), store.profile(), store.policy(),
            ManagerConfig(nominalSteps = 30), DeviceReader(context, store.profile()).read().state)
        OrtTrainer(bundle, bundle.file("checkpoint")).use { trainer ->
            val before = trainer.evaluate(x, y).first
            var runs = 0
            while (true) {
                val d = manager.next()
                if (d !is Decision.Run) break
                val loss = trainer.step(x, y, d.lr)
                manager.observe(loss.toDouble(), 0.01, null)
                runs++
            }
            val after = trainer.evaluate(x, y).first
            assertTrue("no step ran", runs > 0)
            assertTrue("loss $before -> $after did not fall", after < before)
            val ckpt = File(context.cacheDir, "test-checkpoint")
            trainer.saveCheckpoint(ckpt)
            trainer.reload(ckpt)
            assertEquals(after, trainer.evaluate(x, y).first, 1e-6f)
        }
    }
}
