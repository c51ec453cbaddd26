package org.mobilelr.demo

import org.mobilelr.core.Decision
import org.mobilelr.core.Json
import org.mobilelr.core.ScheduleManager
import java.io.File
import java.io.IOException

/**
 * The fine-tuning run on disk, written so that a kill at any instant leaves a consistent
 * pair of (weights, manager state):
 *
 * ```
 * train/current/checkpoint        ORT checkpoint: weights + AdamW moments, latest
 * train/current/good_checkpoint   weights at the manager's last good step (rollback target)
 * train/current/state.json        {"manager": <ScheduleManager.stateDict()>, "bundle": <sha256>}
 * train/history.jsonl             one line per step (LR, loss, battery, temperature) for the chart
 * train/status.json               the last decision and plan, for the screen
 * train/inference_model.onnx      the fine-tuned model, exported for prediction
 * ```
 *
 * A commit writes a complete `next/` directory and swaps it in with two renames
 * (`current` -> `old`, `next` -> `current`); [recover] finishes or undoes an interrupted swap.
 */
class TrainingFiles(val dir: File) {
    private val current = File(dir, "current")
    private val next = File(dir, "next")
    private val old = File(dir, "old")
    val history = File(dir, "history.jsonl")
    val status = File(dir, "status.json")
    val inferenceModel = File(dir, "inference_model.onnx")

    class Resume(val manager: Map<String, Any?>, val bundleSha256: String, val checkpoint: File, val goodCheckpoint: File?)

    init {
        dir.mkdirs()
    }

    /** Undo a half-done commit: `next/` is incomplete by definition, `old/` is the last good one. */
    @Synchronized
    fun recover() {
        if (!File(current, STATE).isFile && File(old, STATE).isFile) {
            current.deleteRecursively()
            if (!old.renameTo(current)) throw IOException("cannot restore ${old.path}")
        }
        next.deleteRecursively()
        old.deleteRecursively()
    }

    @Synchronized
    fun load(): Resume? {
        recover()
        val state = File(current, STATE)
        if (!state.isFile) return null
        val obj = Json.parseObject(state.readText())
        @Suppress("UNCHECKED_CAST")
        val good = File(current, GOOD).takeIf { it.isFile }
        return Resume(obj["manager"] as Map<String, Any?>, obj["bundle"] as String, File(current, CKPT), good)
    }

    /**
     * Save the run: [saveWeights] writes the ORT checkpoint into the given file; [accepted]
     * says the manager took this checkpoint as its rollback target (markCheckpoint returned
     * true), else the previous rollback target is carried over.
     */
    @Synchronized
    fun commit(saveWeights: (File) -> Unit, accepted: Boolean, manager: ScheduleManager, bundleSha256: String) {
        recover()
        if (!next.mkdirs()) throw IOException("cannot create ${next.path}")
        val ckpt = File(next, CKPT)
        saveWeights(ckpt)
        val previousGood = File(current, GOOD)
        if (accepted) ckpt.copyTo(File(next, GOOD)) else if (previousGood.isFile) previousGood.copyTo(File(next, GOOD))
        val state = linkedMapOf<String, Any?>("manager" to manager.stateDict(), "bundle" to bundleSha256)
        SampleStore.atomicWrite(File(next, STATE), Json.write(state))
        if (current.exists() && !current.renameTo(old)) throw IOException("cannot move ${current.path}")
        if (!next.renameTo(current)) throw IOException("cannot install ${next.path}")
        old.deleteRecursively()
    }

    /** Forget the run (the user asked for a fresh one); the exported model stays. */
    @Synchronized
    fun reset() {
        current.deleteRecursively()
        next.deleteRecursively()
        old.deleteRecursively()
        history.delete()
        status.delete()
    }

    fun appendHistory(row: Map<String, Any?>) {
        history.appendText(Json.write(row) + "\n")
    }

    fun readHistory(limit: Int = 5000): List<Map<String, Any?>> {
        if (!history.isFile) return emptyList()
        val lines = history.readLines().filter { it.isNotBlank() }
        val tail = if (lines.size > limit) lines.subList(lines.size - limit, lines.size) else lines
        @Suppress("UNCHECKED_CAST")
        return tail.mapNotNull { line -> try { Json.parse(line) as Map<String, Any?> } catch (e: Exception) { null } }
    }

    fun writeStatus(decision: Decision?, manager: ScheduleManager?, note: String) {
        val obj = linkedMapOf<String, Any?>(
            "note" to note,
            "decision" to decision?.toJson(),
            "step" to manager?.step,
            "nominal_steps" to manager?.nominalSteps,
            "planned_total" to manager?.plannedTotal,
            "plan" to manager?.lastPlan?.toJson(),
            "device" to manager?.device?.toJson())
        SampleStore.atomicWrite(status, Json.write(obj))
    }

    fun readStatus(): Map<String, Any?>? = try {
        if (status.isFile) Json.parseObject(status.readText()) else null
    } catch (e: Exception) {
        null
    }

    companion object {
        const val CKPT = "checkpoint"
        const val GOOD = "good_checkpoint"
        const val STATE = "state.json"
    }
}
