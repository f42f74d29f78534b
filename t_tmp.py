import numpy as np, time
from gfpose_core import Engine
from gfpose_core.skeleton import bone_lengths
e = Engine.load(device='cpu')
print('steps', e.config['training']['best_step'])
for s, n in [('em',1000),('em',200),('sde_heun',25),('heun',20)]:
    t=time.time(); g = e.generate(300, seed=0, sampler=s, steps=n)
    print(s, n, 'bone rel err', np.round(np.abs(bone_lengths(g)/e.space.reference_bones-1).mean(),3), 'time', round(time.time()-t,1))
