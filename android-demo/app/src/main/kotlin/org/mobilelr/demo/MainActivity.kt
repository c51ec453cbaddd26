package org.mobilelr.demo

import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.view.ViewGroup
import android.widget.Button
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import android.widget.Toast
import androidx.appcompat.app.AppCompatActivity
import androidx.work.ExistingWorkPolicy
import org.mobilelr.core.Budget
import org.mobilelr.core.StepCost
import org.mobilelr.core.ThermalStatus
import org.mobilelr.core.TrainingFiles
import org.mobilelr.core.ValidationError
import org.mobilelr.core.VerifiedBundle
import java.io.File
import java.util.Locale
import java.util.concurrent.Executors

/**
 * The personal digit recogniser: draw a digit, label it (the sample is stored), predict new
 * drawings, and fine-tune in the background ([TrainingWorker]). The screen shows the battery
 * and thermal status as the manager sees them, the planner's answer for a run right now, the
 * worker's last decision, and the LR / loss / battery chart of the run.
 *
 * The layout is built in code (no XML beyond the theme) to keep the demo in a few files.
 * File and ORT work runs on a single background executor, never on the main thread.
 */
class MainActivity : AppCompatActivity() {
    private val io = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())
    private lateinit var canvas: DigitCanvasView
    private lateinit var chart: ChartView
    private lateinit var prediction: TextView
    private lateinit var status: TextView
    private lateinit var samples: SampleStore
    private lateinit var files: TrainingFiles
    private var bundle: VerifiedBundle? = null
    private var labels: List<String> = (0..9).map { it.toString() }
    private var predictor: Predictor? = null

    private val refresh = object : Runnable {
        override fun run() {
            io.execute { updateStatus() }
            main.postDelayed(this, 2000)
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        samples = SampleStore(filesDir)
        files = TrainingFiles(File(filesDir, "train"))

        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(24, 24, 24, 24)
        }
        canvas = DigitCanvasView(this)
        column.addView(canvas, LinearLayout.LayoutParams(ViewGroup.LayoutParams.MATCH_PARENT,
            ViewGroup.LayoutParams.WRAP_CONTENT))

        column.addView(TextView(this).apply { text = "Label the drawing (stores a sample):" })
        for (row in 0 until 2) {
            val line = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
            for (d in row * 5 until row * 5 + 5) {
                line.addView(Button(this).apply {
                    text = d.toString()
                    setOnClickListener { label(d) }
                }, LinearLayout.LayoutParams(0, ViewGroup.LayoutParams.WRAP_CONTENT, 1f))
            }
            column.addView(line)
        }
        val actions = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
        fun action(title: String, onClick: () -> Unit) = actions.addView(Button(this).apply {
            text = title
            setOnClickListener { onClick() }
        }, LinearLayout.LayoutParams(0, ViewGroup.LayoutParams.WRAP_CONTENT, 1f))
        action("Clear") { canvas.clear() }
        action("Predict") { predict() }
        action("Train") { train() }
        action("Stop") { TrainingWorker.cancel(this) }
        column.addView(actions)

        prediction = TextView(this).apply { textSize = 20f }
        column.addView(prediction)
        chart = ChartView(this)
        column.addView(chart, LinearLayout.LayoutParams(ViewGroup.LayoutParams.MATCH_PARENT,
            ViewGroup.LayoutParams.WRAP_CONTENT))
        status = TextView(this).apply { textSize = 13f }
        column.addView(status)
        setContentView(ScrollView(this).apply { addView(column) })

        io.execute { openBundle() }
    }

    override fun onResume() {
        super.onResume()
        main.post(refresh)
    }

    override fun onPause() {
        main.removeCallbacks(refresh)
        super.onPause()
    }

    override fun onDestroy() {
        io.execute { predictor?.close() }
        io.shutdown()
        super.onDestroy()
    }

    /** Work on the executor; an exception becomes a message (uncaught, it would end the process). */
    private fun background(what: String, block: () -> Unit) = io.execute {
        try {
            block()
        } catch (e: Exception) {
            toast("$what failed: ${e.javaClass.simpleName}: ${e.message}")
        }
    }

    private fun toast(msg: String) {
        main.post { Toast.makeText(this, msg, Toast.LENGTH_SHORT).show() }
    }

    /** Verify the bundle (every file's SHA-256 against the manifest) before ORT sees any of it. */
    private fun openBundle() {
        try {
            val store = BundleStore(this)
            val b = store.open()
            bundle = b
            labels = store.labels(b)
        } catch (e: ValidationError) {
            main.post { prediction.text = "Bundle refused: ${e.message}" }
        } catch (e: java.io.IOException) {
            main.post { prediction.text = "No bundle: ${e.message}" }
        } catch (e: Exception) {  // an exception on the executor would end the app's process
            main.post { prediction.text = "Bundle not usable: ${e.javaClass.simpleName}: ${e.message}" }
        }
    }

    private fun label(digit: Int) {
        val x = canvas.features()
        if (x == null) {
            toast("draw a digit first")
            return
        }
        canvas.clear()
        background("storing the sample") {
            samples.add(SampleStore.Sample(x, digit))
            toast("stored as ${labels.getOrElse(digit) { digit.toString() }} (${samples.count()} samples)")
        }
    }

    /** The predictor of [model], reused while the file is unchanged; null if ORT refuses the model. */
    private fun predictorFor(model: File, inputName: String): Predictor? {
        val p = predictor
        if (p != null && p.modelFile == model && p.modelTime == model.lastModified()) return p
        p?.close()
        predictor = null
        predictor = try {
            Predictor(model, inputName)
        } catch (e: Exception) {  // OrtException and friends: refuse this model, keep the app alive
            null
        }
        return predictor
    }

    private fun predict() {
        val x = canvas.features() ?: return toast("draw a digit first")
        background("predicting") {
            val b = bundle ?: return@background toast("no verified bundle")
            // the fine-tuned model once the worker exported one, else the bundle's own; the
            // worker writes the exported model to a temp file and renames it, so it is whole
            val tuned = files.inferenceModel.takeIf { it.isFile }
            var model = tuned ?: b.file("inference_model.onnx")
            var p = predictorFor(model, b.io.inputName)
            if (p == null && tuned != null) {
                model = b.file("inference_model.onnx")  // a fine-tuned model ORT cannot load
                p = predictorFor(model, b.io.inputName)
            }
            val probs = try {
                p?.predict(x)
            } catch (e: Exception) {
                null
            } ?: return@background toast("the model could not be run")
            val best = OrtTrainer.argmax(probs)
            val name = labels.getOrElse(best) { best.toString() }
            val which = if (model == files.inferenceModel) "fine-tuned" else "pre-trained"
            main.post {
                prediction.text = String.format(Locale.ROOT, "It is a %s (%.0f %%, %s model)", name,
                    100.0 * probs[best], which)
            }
        }
    }

    private fun train() {
        background("queueing the training") {
            val done = (files.readStatus()?.get("decision") as Map<*, *>?)?.get("type") == "stop"
            if (done) files.reset()  // a finished run: start a new one on the current samples
            val chargingOnly = try {
                BundleStore(this).policy().chargingOnly
            } catch (e: ValidationError) {
                false
            }
            TrainingWorker.enqueue(this, 0, ExistingWorkPolicy.REPLACE, chargingOnly)
            toast("training queued (runs under WorkManager's battery constraints)")
        }
    }

    /** Battery and thermal state as the manager sees it, the plan for now, the worker's last word. */
    private fun updateStatus() {
        val sb = StringBuilder()
        try {
            val store = BundleStore(this)
            val profile = store.profile()
            val policy = store.policy()
            val r = DeviceReader(this, profile).read()
            val st = r.state
            sb.append(String.format(Locale.ROOT, "Battery %.0f %%%s, %.1f °C (%s), thermal %s\n",
                100 * st.level, if (st.charging) " charging" else "", st.temperatureC, r.source,
                ThermalStatus.name(st.thermalStatus)))
            val plan = Budget.plan(profile, st, policy, StepCost.fromProfile(profile))
            sb.append("Planner now (${profile.name} profile): ${plan.steps} steps, limited by " +
                "${plan.limitingFactor}${if (plan.detail.isNotEmpty()) " (${plan.detail})" else ""}\n")
        } catch (e: Exception) {
            sb.append("device: ${e.message}\n")
        }
        sb.append("Samples: ${samples.histogram(10).joinToString(" ")} (per digit)\n")
        val s = files.readStatus()
        if (s != null) {
            sb.append("Worker: ${s["note"]}")
            val d = s["decision"] as Map<*, *>?
            if (d != null && d["type"] == "run") {
                sb.append(String.format(Locale.ROOT, ", step %s of %s planned, LR %.3g", d["step"], s["planned_total"],
                    (d["lr"] as Number).toDouble()))
            }
            sb.append('\n')
        }
        val history = files.readHistory()
        main.post {
            status.text = sb.toString()
            chart.setHistory(history)
        }
    }
}
