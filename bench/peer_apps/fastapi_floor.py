"""The floor users start from: a FastAPI app the tutorial way (load the Keras model, call
``model.predict`` per request, ``.tolist()`` back). Started by bench/fastapi_floor.py:

    python fastapi_floor.py PORT NAME=MODEL.keras [NAME=MODEL.keras ...]
"""

import sys

import keras
import numpy as np
import uvicorn
from fastapi import FastAPI, Request

models = {}
for arg in sys.argv[2:]:
    name, path = arg.split("=", 1)
    models[name] = keras.models.load_model(path)
app = FastAPI()


@app.get("/ready")
def ready():
    return {"ok": True}


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request):
    body = await request.json()
    x = np.array(body["instances"], dtype="float32")
    return {"predictions": models[name].predict(x, verbose=0).tolist()}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
