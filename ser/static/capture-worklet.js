// The microphone's samples, from the audio thread to the page in blocks of
// `blockSize` (a few hundred per second would be one message per 128-sample
// render quantum). "flush" sends what is held and then {flushed: true}, so
// the page knows it has every sample up to the stop.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.block = new Float32Array(options.processorOptions.blockSize);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === 'flush') {
        this.send();
        this.port.postMessage({flushed: true});
      }
    };
  }

  send() {
    if (this.filled > 0) {
      const samples = this.block.slice(0, this.filled);
      this.port.postMessage({samples}, [samples.buffer]);
      this.filled = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0][0];
    if (channel) {
      let read = 0;
      while (read < channel.length) {
        const count = Math.min(channel.length - read, this.block.length - this.filled);
        this.block.set(channel.subarray(read, read + count), this.filled);
        this.filled += count;
        read += count;
        if (this.filled === this.block.length) {
          this.send();
        }
      }
    }
    return true;
  }
}

registerProcessor('capture', CaptureProcessor);
