// AudioWorklet processor for the demo's microphone recording (loaded by demo.js with audioWorklet.addModule).
// Posts each 128-frame render quantum of the first input, mixed down to mono, to the page as a Float32Array.
class PcmTap extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}

registerProcessor("pcm-tap", PcmTap);
