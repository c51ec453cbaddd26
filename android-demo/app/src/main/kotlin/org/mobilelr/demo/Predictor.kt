package org.mobilelr.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.io.File
import java.nio.FloatBuffer

/**
 * Inference with an exported model (`OrtSession`, from the same training AAR): the bundle's
 * `inference_model.onnx` until the phone has fine-tuned, then the model the worker exported
 * with `exportModelForInference` (see [TrainingFiles.inferenceModel]).
 */
class Predictor(model: File, private val inputName: String = "input") : AutoCloseable {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession = env.createSession(model.path, OrtSession.SessionOptions())
    val modelFile: File = model
    val modelTime: Long = model.lastModified()

    /** Class probabilities for one 64-feature image. */
    fun predict(features: FloatArray): FloatArray {
        OnnxTensor.createTensor(env, FloatBuffer.wrap(features), longArrayOf(1, features.size.toLong())).use { x ->
            session.run(mapOf(inputName to x)).use { result ->
                @Suppress("UNCHECKED_CAST")
                val logits = (result.get(0).value as Array<FloatArray>)[0]
                return softmax(logits)
            }
        }
    }

    override fun close() = session.close()

    companion object {
        fun softmax(z: FloatArray): FloatArray {
            var m = z[0]
            for (v in z) if (v > m) m = v
            val e = FloatArray(z.size) { Math.exp((z[it] - m).toDouble()).toFloat() }
            val s = e.sum()
            return FloatArray(z.size) { e[it] / s }
        }
    }
}
