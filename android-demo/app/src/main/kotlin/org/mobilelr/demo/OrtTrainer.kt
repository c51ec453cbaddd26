package org.mobilelr.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtTrainingSession
import org.mobilelr.core.AtomicFile
import org.mobilelr.core.VerifiedBundle
import java.io.File
import java.nio.FloatBuffer
import java.nio.LongBuffer
import java.nio.file.Paths

/**
 * A wrapper over `ai.onnxruntime.OrtTrainingSession` (onnxruntime-training-android 1.19.2),
 * shaped like the official ORT Personalize sample's `ORTTrainer`: one training step is
 * `trainStep` -> `optimizerStep` -> `lazyResetGrad`. The LR is set before every step with
 * `setLearningRate`, from the schedule manager (no ORT scheduler is registered).
 *
 * The Java API has no public checkpoint loader: `OrtTrainingSession.OrtCheckpointState.
 * loadCheckpoint` is package-private, and `OrtEnvironment.createTrainingSession(checkpoint,
 * train, eval, optimizer)` loads the checkpoint file itself. A rollback therefore closes the
 * session and creates a new one from the checkpoint file to return to.
 *
 * Input names and shapes come from the bundle's manifest (`model.input`, `model.labels`):
 * for digits-mlp a float32 `[B, 64]` input in [0, 1] and int64 `[B]` labels; the training
 * model's outputs are the loss first and the logits (`output`) second.
 */
class OrtTrainer(private val bundle: VerifiedBundle, checkpoint: File) : AutoCloseable {
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()
    private var session: OrtTrainingSession = create(checkpoint)

    // Typed and validated by BundleVerifier.verify (a field of the wrong type is refused there,
    // not a ClassCastException here).
    private val inputName = bundle.io.inputName
    private val labelsName = bundle.io.labelsName
    private val outputName = bundle.io.outputName
    val features: Int = bundle.io.features

    private fun create(checkpoint: File): OrtTrainingSession = env.createTrainingSession(
        checkpoint.path,
        bundle.file("training_model.onnx").path,
        bundle.file("eval_model.onnx").path,
        bundle.file("optimizer_model.onnx").path)

    /** The bundle's own (pre-trained) checkpoint: where a rollback to step 0 goes. */
    val initialCheckpoint: File get() = bundle.file("checkpoint")

    /**
     * Reopen the session from a checkpoint file (rollback, or resume in a new worker). The new
     * session is created before the old one is closed: if creating it fails, the trainer keeps
     * its open session (closing first left a closed one behind, which [close] closed again).
     */
    fun reload(checkpoint: File) {
        val fresh = create(checkpoint)
        val previous = session
        session = fresh
        previous.close()
    }

    private fun inputs(x: Array<FloatArray>, y: LongArray): Map<String, OnnxTensor> {
        val flat = FloatArray(x.size * features)
        for (i in x.indices) System.arraycopy(x[i], 0, flat, i * features, features)
        val input = OnnxTensor.createTensor(env, FloatBuffer.wrap(flat), longArrayOf(x.size.toLong(), features.toLong()))
        val labels = OnnxTensor.createTensor(env, LongBuffer.wrap(y), longArrayOf(y.size.toLong()))
        return mapOf(inputName to input, labelsName to labels)
    }

    /**
     * One step at learning rate [lr]; returns the loss. A non-finite loss skips the optimizer
     * step (the weights stay as they were) and is returned, so the manager can roll back.
     */
    fun step(x: Array<FloatArray>, y: LongArray, lr: Double): Float {
        val feed = inputs(x, y)
        try {
            session.setLearningRate(lr.toFloat())
            val loss = session.trainStep(feed).use { result -> result.get(0).value as Float }
            if (!loss.isNaN() && !loss.isInfinite()) session.optimizerStep()
            session.lazyResetGrad()
            return loss
        } finally {
            feed.values.forEach { it.close() }
        }
    }

    /** Mean loss and accuracy on labelled samples with the eval model (no update). */
    fun evaluate(x: Array<FloatArray>, y: LongArray): Pair<Float, Float> {
        val feed = inputs(x, y)
        try {
            return session.evalStep(feed).use { result ->
                val loss = result.get(0).value as Float
                @Suppress("UNCHECKED_CAST")
                val logits = result.get(1).value as Array<FloatArray>
                var correct = 0
                for (i in logits.indices) if (argmax(logits[i]) == y[i].toInt()) correct++
                Pair(loss, correct.toFloat() / y.size)
            }
        } finally {
            feed.values.forEach { it.close() }
        }
    }

    /** Save weights and optimizer state (AdamW moments) to [path] (the caller fsyncs it). */
    fun saveCheckpoint(path: File) {
        session.saveCheckpoint(Paths.get(path.path), true)
    }

    /**
     * Write an inference model with the current weights (re-reads the bundle's eval model) next
     * to [path], fsync it and rename it over [path]: the screen may be loading the model, and it
     * must only ever see a complete one.
     */
    fun exportForInference(path: File) {
        val tmp = File(path.path + ".tmp")
        session.exportModelForInference(Paths.get(tmp.path), arrayOf(outputName))
        AtomicFile.sync(tmp)
        if (!tmp.renameTo(path)) throw java.io.IOException("cannot replace ${path.path}")
        path.parentFile?.let { AtomicFile.syncDir(it) }
    }

    override fun close() {
        session.close()
        // The environment is shared and reference-counted by ORT; it is not closed here.
    }

    companion object {
        fun argmax(v: FloatArray): Int {
            var best = 0
            for (i in v.indices) if (v[i] > v[best]) best = i
            return best
        }
    }
}
